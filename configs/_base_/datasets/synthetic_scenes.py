# Synthetic scenes (tools/data/make_synthetic_scenes.py) for CPU runs: 256x256 images, the views of
# ./byol_views.py with 96 px crops, batch 32.
_base_ = './coco_scenes.py'

data_root = 'data/synthetic_scenes/'
view_size = 96
view_pipeline1 = [dict(_base_.view_pipeline1[0], scale=view_size), *_base_.view_pipeline1[1:]]
view_pipeline2 = [dict(_base_.view_pipeline2[0], scale=view_size), *_base_.view_pipeline2[1:]]
train_pipeline = [
    _base_.train_pipeline[0],
    dict(_base_.train_pipeline[1], transforms=[view_pipeline1, view_pipeline2]),
    _base_.train_pipeline[2],
]
train_dataloader = dict(
    batch_size=32, num_workers=2, pin_memory=False, dataset=dict(**_base_.synthetic_train, pipeline=train_pipeline))
