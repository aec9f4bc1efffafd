# MoCo v2 (Chen et al., arXiv:2003.04297) with a ResNet-50, as mmpretrain ships it
# (mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py): a stage-1 model that ORL's stage 2
# accepts in place of BYOL (the official README: stage 1 "can be freely replaced with other
# image-level contrastive learning models"). 2a reads its projector (MoCoV2Neck, 128-d), 2c its
# pooled res5 feature (orl_plugin/models/{image,roi}_feature.py).
# - queue of 65,536 negative keys, 128-d, InfoNCE with temperature 0.2;
# - key encoder: EMA of backbone + projector. mmpretrain's EMA computes
#   key = (1 - m) * key + m * query, so momentum=0.001 is the paper's 0.999;
# - per-GPU BN (not SyncBN): MoCo's shuffled BN needs each GPU's statistics to be its own;
# - mmpretrain's initialisation (Conv2d Kaiming fan_out, norm layers 1/0, Linear PyTorch's).
model = dict(
    type='MoCo',
    queue_len=65536,
    feat_dim=128,
    momentum=0.001,
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='ResNet', depth=50, in_channels=3, out_indices=(3, ), norm_cfg=dict(type='BN'), zero_init_residual=False),
    neck=dict(type='MoCoV2Neck', in_channels=2048, hid_channels=2048, out_channels=128, with_avg_pool=True),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2))
