# ORL stage 3 on the synthetic scenes, small enough for a CPU (2 cores, minutes):
# ResNet-18 with plain BN, image views of 96 px and RoI patches of 48 px, batch 16,
# 30 epochs. Same method and pipelines as the COCO config otherwise.
# Needs data/synthetic_scenes (tools/data/make_synthetic_scenes.py) and its stage-2
# correspondence store data/synthetic_scenes/orl/correspondence.orlstore
# (configs/orl/stage2/correspondence_*_synthetic.py).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

img_size = 96
patch_size = 48

# ---------------------------------------------------------------- model
model = dict(
    type='ORL',
    base_momentum=0.01,  # target momentum 0.99 -> 1 (CosineEMA convention)
    end_momentum=0.0,
    global_loss_weight=1.0,
    intra_loss_weight=1.0,
    inter_loss_weight=1.0,
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=18,
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
        loss=dict(
            type='CosineSimilarityLoss', shift_factor=2.0,
            scale_factor=2.0)),
)

# ---------------------------------------------------------------- data
dataset_type = 'ORLDataset'
data_root = 'data/synthetic_scenes/'

view_pipeline1 = [
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.2,
                hue=0.1)
        ],
        prob=0.8),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989)),
    dict(
        type='GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=1.0),
    dict(type='Solarize', thr=128, prob=0.0),
]
view_pipeline2 = [
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        interpolation='bicubic',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.2,
                hue=0.1)
        ],
        prob=0.8),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989)),
    dict(
        type='GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]
patch_pipeline1 = [dict(type='RoICrop', size=patch_size), *view_pipeline1[1:]]
patch_pipeline2 = [dict(type='RoICrop', size=patch_size), *view_pipeline2[1:]]
train_pipeline = [
    dict(type='BoxJitter'),
    dict(
        type='ORLViews',
        img_pipelines=[view_pipeline1, view_pipeline2],
        patch_pipelines=[patch_pipeline1, patch_pipeline2]),
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'knn_img_path', 'knn_slot',
                   'intra_bbox', 'inter_bbox_pair')),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img_path='images/'),
        correspondence_file='orl/correspondence.orlstore',
        pipeline=train_pipeline))

# ---------------------------------------------------------------- schedule
# The stage-1 CPU config's lr (0.05 at batch 32), scaled linearly to batch 16.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.025, momentum=0.9, weight_decay=1e-4))
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
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=16)

# ---------------------------------------------------------------- runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
