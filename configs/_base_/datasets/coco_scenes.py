# ORL stage 1 data: COCO train2017 scene images (./scene_lists.py), two BYOL views each
# (./byol_views.py). Labels are not used; SceneImageDataset keeps the JSON order.
# drop_last: a last batch of one image per rank crashes the projector's BatchNorm1d ("Expected more
# than 1 value per channel"), so every epoch drops its partial batch (COCO: 231 of 232 iterations
# per epoch on 8 x 64), as the MoCo v2 and stage-3 loaders do.
_base_ = ['./scene_lists.py', './byol_views.py']

dataset_type = 'SceneImageDataset'
train_pipeline = [
    _base_.image_loader,
    dict(type='MultiView', num_views=[1, 1], transforms=[_base_.view_pipeline1, _base_.view_pipeline2]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    drop_last=True,
    persistent_workers=True,
    pin_memory=True,
    # every rank the same number of distinct images (DefaultSampler pads the epoch with repeats)
    sampler=dict(type='EvenShardSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, **_base_.coco_train2017, pipeline=train_pipeline))
