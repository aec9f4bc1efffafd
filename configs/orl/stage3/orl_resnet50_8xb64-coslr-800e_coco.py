# ORL stage 3 (object-level pre-training) on COCO train2017, as in the paper: ResNet-50 from random
# init (the official initialisation), 800 epochs, SGD lr 0.4 with batch 512 (8 GPUs x 64), cosine
# schedule with 4 warm-up epochs, mixed precision, SyncBN: stage 1's model, views and schedule
# with three predictors and the RoI views (../../_base_/models/orl_resnet50.py,
# ../../_base_/datasets/coco_orl.py), and the COCO monitors.
# Needs the stage-2 correspondence store (configs/orl/stage2/correspondence_*_coco.py),
# by default data/coco/orl/correspondence.orlstore; an official ORL correspondence
# JSON works too (correspondence_file='.../*.json').
_base_ = [
    '../../_base_/models/orl_resnet50.py', '../../_base_/datasets/coco_orl.py',
    '../../_base_/schedules/sgd_coslr-800e_bs512.py', 'mmpretrain::_base_/default_runtime.py',
    '../../_base_/coco_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=10, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)

# Differs from the fragments: logging and checkpoint intervals, a seed per rank; the loader decodes with OpenCV and
# runs the views' photometric transforms on the uint8 array (photometric='opencv'; why: ../README.md).
train_pipeline = [
    _base_.train_pipeline[0],
    dict(_base_.train_pipeline[1], photometric='opencv'),
    _base_.train_pipeline[2],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, imdecode_backend='cv2'))
