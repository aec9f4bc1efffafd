# ORL stage 1 with GPU-side augmentation. Differs from ./byol_resnet50_8xb64-coslr-800e_coco.py: the loader only
# decodes and crops each view to uint8 (ImageViews, crop_only=True), and the model's data preprocessor
# (ViewAugmentDataPreprocessor) runs the rest of the same view pipelines batched on the GPU. Why, and what is
# tested: ./README.md.
_base_ = './byol_resnet50_8xb64-coslr-800e_coco.py'

views = _base_.train_pipeline[1].pipelines  # ImageViews: [view_pipeline1, view_pipeline2]
train_pipeline = [
    dict(_base_.train_pipeline[0], imdecode_backend='cv2'),
    dict(type='ImageViews', pipelines=views, crop_only=True), _base_.train_pipeline[2]
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(type='ViewAugmentDataPreprocessor', view_pipelines=views))
del views
