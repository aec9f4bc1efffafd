# ORL stage 1: image-level BYOL on COCO train2017 (Xie et al., NeurIPS 2021; official
# configs/selfsup/orl/coco/stage1/r50_bs512_ep800.py), on mmpretrain's BYOL: ResNet-50 with SyncBN
# and the official initialisation, 8 GPUs x 64 images = 512, SGD lr 0.4, 800 epochs, cosine to 0
# after a 4-epoch linear warm-up, AMP. Each part is a fragment under ../_base_/.
_base_ = [
    '../_base_/models/byol_resnet50.py', '../_base_/datasets/coco_scenes.py',
    '../_base_/schedules/sgd_coslr-800e_bs512.py', 'mmpretrain::_base_/default_runtime.py', '../_base_/coco_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=10, max_keep_ckpts=3))

# The loader's CPU cost per sample sets how many cores a GPU needs (tools/benchmarks/input_pipeline.py):
# COCO's JPEGs are decoded with OpenCV (PIL's pixels exactly, tests/test_decoding.py), and ImageViews cuts
# both views from the decoded image and runs their photometric transforms on the uint8 array in PIL's
# arithmetic (photometric='opencv': the same random draws; flip, brightness, contrast, saturation, grey
# and solarize give PIL's pixels, hue and blur within a few levels; tests/test_fast_photometric.py).
# photometric='pil' gives the mmcv/PIL pipeline's pixels.
train_pipeline = [
    dict(_base_.train_pipeline[0], imdecode_backend='cv2'),
    dict(type='ImageViews', pipelines=_base_.train_pipeline[1].transforms, photometric='opencv'),
    _base_.train_pipeline[2],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
