# The CPU stage-1 config with the augmentation in the data preprocessor. Differs from
# ./byol_resnet18_1xb32-coslr-30e_synthetic.py as ./byol_resnet50_8xb64-gpuaug-coslr-800e_coco.py differs from its
# base (on a CPU the preprocessor runs in the main process).
_base_ = './byol_resnet18_1xb32-coslr-30e_synthetic.py'

views = _base_.train_pipeline[1].transforms
train_pipeline = [
    _base_.train_pipeline[0],
    dict(type='ImageViews', pipelines=views, crop_only=True), _base_.train_pipeline[2]
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(type='ViewAugmentDataPreprocessor', view_pipelines=views))
del views
