# The CPU stage-3 config (./orl_resnet18_1xb16-coslr-30e_synthetic.py) with the augmentation in the data
# preprocessor, as ./orl_resnet50_8xb64-gpuaug-coslr-800e_coco.py (on a CPU it runs in the main process).
_base_ = './orl_resnet18_1xb16-coslr-30e_synthetic.py'

views = _base_.train_pipeline[1]
train_pipeline = [_base_.train_pipeline[0], dict(views, crop_only=True), _base_.train_pipeline[2]]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(
    data_preprocessor=dict(
        type='ViewAugmentDataPreprocessor', view_pipelines=views.img_pipelines + views.patch_pipelines * 2))
del views
