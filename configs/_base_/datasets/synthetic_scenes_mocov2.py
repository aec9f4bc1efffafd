# Synthetic scenes (tools/data/make_synthetic_scenes.py) for the CPU MoCo v2 configs: the MoCo v2
# views of ./coco_scenes_mocov2.py with 96 px crops (as ./synthetic_scenes.py for BYOL), batch 32.
_base_ = './coco_scenes_mocov2.py'

data_root = 'data/synthetic_scenes/'
view_size = 96
view_pipeline = [dict(_base_.view_pipeline[0], scale=view_size), *_base_.view_pipeline[1:]]
train_pipeline = [
    _base_.train_pipeline[0],
    dict(_base_.train_pipeline[1], transforms=[view_pipeline]),
    _base_.train_pipeline[2],
]
train_dataloader = dict(
    batch_size=32, num_workers=2, pin_memory=False, dataset=dict(**_base_.synthetic_train, pipeline=train_pipeline))
