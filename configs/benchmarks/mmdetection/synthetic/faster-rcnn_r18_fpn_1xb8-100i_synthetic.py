# CPU transfer check on the synthetic scenes: Faster R-CNN R18-FPN fine-tuned from the ResNet-18 of
# the CPU stage-1/stage-3 configs (mmpretrain's ResNet-18 keys are mmdet's ResNet-18 keys), trained
# on instances_train.json and evaluated (COCO bbox mAP) on instances_val.json, with the 256 px
# images resized to 192 px. Plain BN (one process), trained statistics, no frozen stage:
# the benchmark setting of the full-size configs, scaled down to a few minutes on 2 CPU cores (192 px,
# narrower FPN/heads, fewer proposals and RoIs, 100 iterations of batch 8; ../../README.md).
#   python tools/det_train.py THIS_CONFIG --pretrained work_dirs/<stage-3 run>/epoch_30.pth
#   tools/benchmarks/mmdetection/train.sh THIS_CONFIG CKPT 0      (0 GPUs = CPU)
# `--pretrained none` gives the random-initialisation baseline.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
default_scope = 'mmdet'

# The stage-3 CPU run's last checkpoint (configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py).
pretrained = 'work_dirs/orl_resnet18_1xb16-coslr-30e_synthetic/epoch_30.pth'

data_root = 'data/synthetic_scenes/'
# Category names in COCO id order, from the generator that wrote the data (one source of truth).
from orl_plugin.datasets.synthetic_scenes import CATEGORIES  # noqa: E402

classes = tuple(c['name'] for c in CATEGORIES)
del CATEGORIES
metainfo = dict(classes=classes)
img_scale = (192, 192)
batch_size = 8
max_iters = 100  # with the schedule below: set both when changing it
width = 128  # FPN and head channels (256 in the COCO config)

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        # a fixed 2x2 sampling grid per bin: mmcv's CPU RoIAlign is slow with adaptive sampling
        bbox_roi_extractor=dict(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2), out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=len(classes))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300), rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json', metric='bbox')
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=25),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[int(max_iters * 0.75)], gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
