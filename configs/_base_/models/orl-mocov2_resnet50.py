# ORL stage 3 with the contrastive objective in every branch (MoCo v2's form, Chen et al. 2020):
# the network of ./orl_resnet50.py (SyncBN, the official initialisation) with MoCo v2's projector
# (2048 -> 2048 -> 128, no BN) and, per branch, InfoNCE against a queue of its own 65,536 keys at
# temperature 0.2, both view orders (ContrastiveObjective). The target is MoCo's key encoder: an
# EMA with the constant momentum 0.999 (0.001 in mmpretrain's CosineEMA convention).
_base_ = './orl_resnet50.py'

official_init = [
    dict(type='Kaiming', layer=['Conv2d', 'Linear'], mode='fan_in', nonlinearity='relu', distribution='normal', bias=0),
    dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1, bias=0),
]
model = dict(
    base_momentum=0.001,
    end_momentum=0.001,
    neck=dict(
        _delete_=True,
        type='MoCoV2Neck',
        in_channels=2048,
        hid_channels=2048,
        out_channels=128,
        with_avg_pool=True,
        init_cfg=official_init),
    head=dict(_delete_=True, type='ContrastiveObjective', feat_dim=128, queue_len=65536, temperature=0.2))
del official_init
