# ORL stage 3 with a ResNet-50: the stage-1 network of ./byol_resnet50.py (backbone + projector,
# its EMA target, the same initialisation) with three predictors of the same shape: the global
# head below and its copies for the intra- and inter-RoI branches (own weights, unless
# `intra_head` / `inter_head` are given).
_base_ = './byol_resnet50.py'

model = dict(
    type='ORL',
    end_momentum=0.0,  # target momentum 0.99 -> 1 with base_momentum=0.01 (CosineEMA convention)
    global_loss_weight=1.0,
    intra_loss_weight=1.0,
    inter_loss_weight=1.0,
    # ORL adds head.loss over both view orders itself: 2 - 2 cos per order is shift 2, scale 2
    # (mmpretrain's BYOL doubles its (1 - cos) terms instead: the same total).
    head=dict(loss=dict(shift_factor=2.0, scale_factor=2.0)))
