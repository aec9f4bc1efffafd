# MEASURING INSTRUMENT, NOT ORL. A supervised ResNet-18 classifier trained with the ground-truth
# labels on the ground-truth object crops of the synthetic scenes (tools/data/make_synthetic_scenes.py,
# version 2). Given to stage 2 in place of a stage-1 checkpoint, it yields the features mining
# would get from a perfect stage 1: it separates "stage 2 is correct" from "stage 1 learned".
# It uses labels, which ORL never does; no ORL config may select it (../../tests/test_instrument.py).
# Crops: each object's box plus 10 % context per side, 64 px (the CPU stage-2c crop size), the
# BYOL configs' normalisation, so its backbone sees crops as 2c shows them; an angular-margin head
# (./_base_/instrument_resnet18.py says why). Held-out accuracy (mmpretrain's Accuracy on the val
# split's crops) is logged every epoch. On 400 v2 scenes of 256 px (1,314 training crops, 317 held
# out): 98.4 % top-1 after 6 epochs (most common class: 19.9 %), about 3.5 minutes on one core. On
# 2,000 scenes (6,380 crops; the mechanism yardstick trains it on scenes of its own): 99.4 %,
# 6-8 minutes on 2 cores, and the mined pairs it gives are right more often (README).
# On a 2-core CPU, from the repository root (on PYTHONPATH: the config imports projects.orl_evidence):
#   PYTHONPATH=. python tools/train.py \
#       projects/orl_evidence/configs/instrument/instrument-gt-classifier_resnet18_1xb32-coslr-6e_synthetic-crops.py
_base_ = ['./_base_/instrument_resnet18.py', 'mmpretrain::_base_/default_runtime.py']
default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin', 'projects.orl_evidence'], allow_failed_imports=False)

data_root = 'data/synthetic_scenes/'
crop_size = 64

crop_dataset = dict(type='ObjectCropDataset', data_root=data_root, data_prefix=dict(img_path='images/'), context=0.1)
train_pipeline = [
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
    dict(type='RoICrop', size=crop_size, box_key='roi_bbox'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
    dict(type='RoICrop', size=crop_size, box_key='roi_bbox'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(crop_dataset, ann_file='annotations/instances_train.json', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(crop_dataset, ann_file='annotations/instances_val.json', pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 6
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - 1,
        eta_min=0.,
        by_epoch=True,
        begin=1,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10), checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
