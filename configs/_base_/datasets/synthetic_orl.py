# ORL stage 3 data on the synthetic scenes for CPU runs: ./coco_orl.py with image views of 96 px
# and RoI patches of 48 px, batch 16, one loader worker.
_base_ = './coco_orl.py'

data_root = 'data/synthetic_scenes/'
img_size = 96
patch_size = 48
view_pipeline1 = [dict(_base_.view_pipeline1[0], scale=img_size), *_base_.view_pipeline1[1:]]
view_pipeline2 = [dict(_base_.view_pipeline2[0], scale=img_size), *_base_.view_pipeline2[1:]]
patch_pipeline1 = [dict(_base_.patch_pipeline1[0], size=patch_size), *_base_.patch_pipeline1[1:]]
patch_pipeline2 = [dict(_base_.patch_pipeline2[0], size=patch_size), *_base_.patch_pipeline2[1:]]
train_pipeline = [
    _base_.train_pipeline[0],
    dict(
        _base_.train_pipeline[1],
        img_pipelines=[view_pipeline1, view_pipeline2],
        patch_pipelines=[patch_pipeline1, patch_pipeline2]),
    _base_.train_pipeline[2],
]
train_dataloader = dict(
    batch_size=16, num_workers=1, pin_memory=False, dataset=dict(**_base_.synthetic_train, pipeline=train_pipeline))
