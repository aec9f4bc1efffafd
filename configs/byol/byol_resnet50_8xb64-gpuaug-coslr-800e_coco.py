# ORL stage 1 (./byol_resnet50_8xb64-coslr-800e_coco.py) with GPU-side augmentation: the data-loader
# workers only decode and crop each view (its RandomResizedCrop, to uint8, cut from the decoded image by
# ImageViews); the model's data preprocessor runs the rest of the same view pipelines (flip, colour
# jitter, grey, blur, solarize) batched on the GPU, with per-sample random parameters and the same
# probabilities. Any stage-1 config switches the same way.
_base_ = './byol_resnet50_8xb64-coslr-800e_coco.py'

views = _base_.train_pipeline[1].pipelines  # ImageViews: [view_pipeline1, view_pipeline2]
# COCO is JPEG, which OpenCV decodes to exactly PIL's pixels (the official Image.open().convert('RGB'),
# tests/test_decoding.py::test_jpeg_pixels_are_the_same_with_both_backends), faster.
train_pipeline = [
    dict(_base_.train_pipeline[0], imdecode_backend='cv2'),
    dict(type='ImageViews', pipelines=views, crop_only=True), _base_.train_pipeline[2]
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(type='ViewAugmentDataPreprocessor', view_pipelines=views))
del views
