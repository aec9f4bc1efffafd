# ORL stage 1: image-level BYOL on COCO train2017, the paper's setting (official
# configs/selfsup/orl/coco/stage1/r50_bs512_ep800.py): ResNet-50 with SyncBN and the official initialisation,
# 8 GPUs x 64 images = 512, SGD lr 0.4, 800 epochs, cosine to 0 after a 4-epoch warm-up, AMP; the fragments under
# ../_base_/ hold all of it, and the COCO monitors (../_base_/coco_probes.py). Why each setting: ./README.md.
_base_ = [
    '../_base_/models/byol_resnet50.py', '../_base_/datasets/coco_scenes.py',
    '../_base_/schedules/sgd_coslr-800e_bs512.py', 'mmpretrain::_base_/default_runtime.py', '../_base_/coco_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=10, max_keep_ckpts=3))

# Differs from the fragments: logging and checkpoint intervals; the loader decodes with OpenCV and ImageViews runs
# the two views' photometric transforms on the uint8 array (photometric='opencv'; 'pil' gives the mmcv/PIL pixels).
train_pipeline = [
    dict(_base_.train_pipeline[0], imdecode_backend='cv2'),
    dict(type='ImageViews', pipelines=_base_.train_pipeline[1].transforms, photometric='opencv'),
    _base_.train_pipeline[2],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
