# ORL stage 1 (image-level BYOL) scaled down for a 2-core CPU: ResNet-18 on the synthetic scenes
# (tools/data/make_synthetic_scenes.py), 96 px views, batch 32, 30 epochs, fp32, plain BN.
# Same method as byol_resnet50_8xb64-coslr-800e_coco.py: projector Linear(bias)-BN-ReLU-Linear
# (no bias, no last BN), predictor, loss (2 - 2 cos) over both view orders, target momentum 0.99 -> 1.
_base_ = [
    '../_base_/datasets/synthetic_scenes.py',
    'mmpretrain::_base_/default_runtime.py',
]
default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

model = dict(
    type='BYOL',
    base_momentum=0.01,  # mmpretrain CosineEMA convention: m = 0.01 -> 0 is target momentum 0.99 -> 1.0
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=18,
        in_channels=3,
        out_indices=(3, ),
        norm_cfg=dict(type='BN'),
        zero_init_residual=False),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=1024,
        out_channels=128,
        num_layers=2,
        with_bias=True,
        with_last_bias=False,
        with_last_bn=False,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='LatentPredictHead',
        predictor=dict(
            type='NonLinearNeck',
            in_channels=128,
            hid_channels=1024,
            out_channels=128,
            num_layers=2,
            with_bias=True,
            with_last_bias=False,
            with_last_bn=False,
            with_avg_pool=False,
            norm_cfg=dict(type='BN1d')),
        loss=dict(type='CosineSimilarityLoss', shift_factor=1.0, scale_factor=1.0)),
)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))

max_epochs = 30
warmup_epochs = 1
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
auto_scale_lr = dict(base_batch_size=32)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2))

# Is it learning? Before training and every 5 epochs, on the held-out split: classify its object
# crops by kNN over the train split's crops (probe/object_knn_top1), and find each image's second
# view among all images' views (probe/view_top1), both with the online backbone; the rank of
# those view features (probe/view_rank) falls when they collapse into a few directions.
custom_hooks = [
    dict(
        type='ObjectProbeHook',
        reference=dict(
            type='SceneImageDataset',
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img_path='images/')),
        query=dict(
            type='SceneImageDataset',
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img_path='images/')),
        interval=5,
        crop_size=64),
    dict(
        type='ViewRetrievalHook',
        dataset=dict(
            type='SceneImageDataset',
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img_path='images/')),
        interval=5,
        max_images=256),
]

# A fixed seed: the random initialisation, and so the probes' starting values, repeat run to run.
randomness = dict(seed=0)
