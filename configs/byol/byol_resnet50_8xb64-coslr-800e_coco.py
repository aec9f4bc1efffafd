# ORL stage 1: image-level BYOL on COCO train2017 (Xie et al., NeurIPS 2021; official
# configs/selfsup/orl/coco/stage1/r50_bs512_ep800.py), on mmpretrain's BYOL.
# 8 GPUs x 64 images = 512; SGD lr 0.4, 800 epochs, cosine to 0 after a 4-epoch linear warm-up, AMP.
_base_ = [
    '../_base_/datasets/coco_scenes.py',
    'mmpretrain::_base_/default_runtime.py',
]
default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

model = dict(
    type='BYOL',
    # mmpretrain's CosineEMA computes target = (1 - m) * target + m * online, with m annealed
    # from `base_momentum` to `end_momentum` (0 by default) over all iterations: m = 0.01 -> 0 is
    # the paper's target momentum 0.99 -> 1.0.
    base_momentum=0.01,
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=50,
        in_channels=3,
        out_indices=(3, ),  # res5
        norm_cfg=dict(type='SyncBN'),
        zero_init_residual=False),  # as the official ResNet (OpenSelfSup default)
    # Projector 2048 -> 4096 -> 256: Linear (with bias) + BN + ReLU + Linear (no bias), no last BN.
    # In mmpretrain's NonLinearNeck `with_bias` is fc0's bias, `with_last_bias` the last Linear's.
    neck=dict(
        type='NonLinearNeck',
        in_channels=2048,
        hid_channels=4096,
        out_channels=256,
        num_layers=2,
        with_bias=True,
        with_last_bias=False,
        with_last_bn=False,
        with_avg_pool=True,
        norm_cfg=dict(type='SyncBN')),
    head=dict(
        type='LatentPredictHead',
        predictor=dict(
            type='NonLinearNeck',
            in_channels=256,
            hid_channels=4096,
            out_channels=256,
            num_layers=2,
            with_bias=True,
            with_last_bias=False,
            with_last_bn=False,
            with_avg_pool=False,
            norm_cfg=dict(type='SyncBN')),
        # BYOL.loss returns 2 * (l(v1, v2) + l(v2, v1)); with l = 1 - cos the total is the paper's
        # (2 - 2 cos) summed over both view orders (mmpretrain's default l = -cos only shifts it by 4).
        loss=dict(type='CosineSimilarityLoss', shift_factor=1.0, scale_factor=1.0)),
)

# The paper and the official config use plain SGD with weight decay on every parameter
# (mmpretrain's own BYOL configs use LARS with BN/bias excluded; not the paper's recipe).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=1e-4))

max_epochs = 800
warmup_epochs = 4
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=0.,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# lr 0.4 is for a total batch of 512; `--auto-scale-lr` rescales it for other batch sizes.
auto_scale_lr = dict(base_batch_size=512)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
