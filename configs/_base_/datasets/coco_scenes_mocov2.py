# MoCo v2 stage-1 data on COCO train2017 scene images (./scene_lists.py): two views of each image
# from the MoCo v2 pipeline (./mocov2_views.py), 32 images per GPU. drop_last: MoCo enqueues
# whole batches and needs the queue length to be a multiple of the batch.
_base_ = ['./scene_lists.py', './mocov2_views.py']

dataset_type = 'SceneImageDataset'
train_pipeline = [
    _base_.image_loader,
    dict(type='MultiView', num_views=2, transforms=[_base_.view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    drop_last=True,
    persistent_workers=True,
    pin_memory=True,
    # every rank the same number of distinct images (DefaultSampler pads the epoch with repeats)
    sampler=dict(type='EvenShardSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, **_base_.coco_train2017, pipeline=train_pipeline))
