# ORL stage 3 (./orl_resnet50_8xb64-coslr-800e_coco.py) with GPU-side augmentation: the data-loader
# workers only decode, crop and resize the two image views (RandomResizedCrop) and the four RoI patches
# (RoICrop) to uint8; the model's data preprocessor runs the rest of the same view pipelines batched on
# the GPU, with per-sample random parameters and the same probabilities. Any stage-3 config switches the
# same way.
_base_ = './orl_resnet50_8xb64-coslr-800e_coco.py'

views = _base_.train_pipeline[1]  # ORLViews
train_pipeline = [_base_.train_pipeline[0], dict(views, crop_only=True), _base_.train_pipeline[2]]
# COCO is JPEG, which OpenCV decodes to exactly PIL's pixels (the official Image.open().convert('RGB'),
# tests/test_decoding.py::test_jpeg_pixels_are_the_same_with_both_backends) 1.5 ms faster per image:
# it keeps the loader under 8 CPU-ms per sample (tools/benchmarks/input_pipeline.py).
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, imdecode_backend='cv2'))
# The six model inputs in ORLViews' order: image views 1, 2; intra patches 1, 2; inter patches 1, 2.
model = dict(
    data_preprocessor=dict(
        type='ViewAugmentDataPreprocessor', view_pipelines=views.img_pipelines + views.patch_pipelines * 2))
del views
