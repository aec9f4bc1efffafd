# ORL stage 1: BYOL with a ResNet-50 (Xie et al., NeurIPS 2021; official
# configs/selfsup/orl/coco/stage1/r50_bs512_ep800.py), on mmpretrain's BYOL.
# Projector 2048 -> 4096 -> 256 and predictor 256 -> 4096 -> 256: Linear (with bias) + BN + ReLU +
# Linear (no bias), no last BN (OpenSelfSup's NonLinearNeckSimCLR with with_bias=False,
# with_last_bn=False). In mmpretrain's NonLinearNeck `with_bias` is fc0's bias, `with_last_bias` the
# last Linear's.
#
# Initialisation as the official code (OpenSelfSup ResNet.init_weights; BYOL.init_weights calls the
# projector's and predictor's init_weights(init_linear='kaiming')): every Conv2d and Linear weight
# Kaiming normal with fan_in and the ReLU gain, std = sqrt(2 / fan_in); biases 0; norm layers
# weight 1, bias 0. (mmpretrain's defaults: Conv2d Kaiming with fan_out; Linear layers PyTorch's
# uniform init with a random bias.)
official_init = [
    dict(type='Kaiming', layer=['Conv2d', 'Linear'], mode='fan_in', nonlinearity='relu', distribution='normal', bias=0),
    dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1, bias=0),
]
projector = dict(
    type='NonLinearNeck',
    in_channels=2048,
    hid_channels=4096,
    out_channels=256,
    num_layers=2,
    with_bias=True,
    with_last_bias=False,
    with_last_bn=False,
    with_avg_pool=True,
    norm_cfg=dict(type='SyncBN'),
    init_cfg=official_init)

model = dict(
    type='BYOL',
    # mmpretrain's CosineEMA computes target = (1 - m) * target + m * online, with m annealed
    # from `base_momentum` to 0 over all iterations: m = 0.01 -> 0 is the paper's target
    # momentum 0.99 -> 1.0.
    base_momentum=0.01,
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=50,
        in_channels=3,
        out_indices=(3, ),  # res5
        norm_cfg=dict(type='SyncBN'),
        zero_init_residual=False,  # as the official ResNet (OpenSelfSup default)
        init_cfg=official_init),
    neck=projector,
    head=dict(
        type='LatentPredictHead',
        predictor=dict(projector, in_channels=256, with_avg_pool=False),
        # BYOL.loss returns 2 * (l(v1, v2) + l(v2, v1)); with l = 1 - cos the total is the paper's
        # (2 - 2 cos) summed over both view orders (mmpretrain's default l = -cos only shifts it).
        loss=dict(type='CosineSimilarityLoss', shift_factor=1.0, scale_factor=1.0)),
)
# Helpers of this file only: a config that inherits it changes `model`, not these.
del official_init, projector
