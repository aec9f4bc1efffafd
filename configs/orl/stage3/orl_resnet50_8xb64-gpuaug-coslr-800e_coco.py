# ORL stage 3 with GPU-side augmentation. Differs from ./orl_resnet50_8xb64-coslr-800e_coco.py: the loader only
# decodes, crops and resizes the two image views (RandomResizedCrop) and the four RoI patches (RoICrop) to uint8,
# and the model's data preprocessor (ViewAugmentDataPreprocessor) runs the rest of the same view pipelines batched
# on the GPU. Why, and what is tested: ../README.md.
_base_ = './orl_resnet50_8xb64-coslr-800e_coco.py'

views = _base_.train_pipeline[1]  # ORLViews
train_pipeline = [_base_.train_pipeline[0], dict(views, crop_only=True), _base_.train_pipeline[2]]
# OpenCV decoding, as the base (its share of the loader's CPU time: ../README.md).
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, imdecode_backend='cv2'))
# The six model inputs in ORLViews' order: image views 1, 2; intra patches 1, 2; inter patches 1, 2.
model = dict(
    data_preprocessor=dict(
        type='ViewAugmentDataPreprocessor', view_pipelines=views.img_pipelines + views.patch_pipelines * 2))
del views
