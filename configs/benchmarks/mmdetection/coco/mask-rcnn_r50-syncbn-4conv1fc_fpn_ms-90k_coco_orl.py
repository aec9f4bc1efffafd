# COCO transfer benchmark of ORL with the paper's protocol: the official detectron2 recipe
# (Jiahao000/ORL benchmarks/detection/configs/R_50_FPN_1x_infomin.yaml on R_50_FPN_1x.yaml,
# Base-RCNN-FPN.yaml and detectron2's defaults), field by field on mmdet; the "transfer protocol"
# table of docs/en/user_guides/finetuning.md lists each setting. The model and data are those of
# ./mask-rcnn_r50-syncbn-4conv1fc_fpn_1x_coco_orl.py (mmdet's 1x schedule of the same setting):
# SyncBN in the backbone, FPN and heads, 4conv1fc box head, no frozen stage, RGB pytorch-style
# normalisation, short side 640-800 (max 1333); what follows is detectron2's schedule and tests.
#   tools/benchmarks/mmdetection/train.sh THIS_CONFIG CKPT 8     (8 GPUs x 2 images = 16)
_base_ = './mask-rcnn_r50-syncbn-4conv1fc_fpn_1x_coco_orl.py'

custom_imports = dict(imports=['orl_plugin', 'orl_plugin.transfer'], allow_failed_imports=False)

# Anchor and RoI matching as detectron2's matchers: each ground-truth box's best anchors are
# positive whatever their IoU (mmdet: only from IoU 0.3); no low-quality RoI matches.
model = dict(
    train_cfg=dict(rpn=dict(assigner=dict(min_pos_iou=0.0)), rcnn=dict(assigner=dict(match_low_quality=False))))

# 90k iterations of 16 images, lr 0.02, x0.1 at 60k and 80k, linear warm-up over 1,000 iterations
# from lr x 0.001; weight decay 1e-4 except on norm layers (SOLVER.WEIGHT_DECAY_NORM 0).
max_iters = 90000
train_dataloader = dict(sampler=dict(type='InfiniteSampler'))
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=max_iters)  # TEST.EVAL_PERIOD 0: evaluated after training
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[60000, 80000], gamma=0.1),
]
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.0))
# TEST.PRECISE_BN: BN statistics recomputed over 200 training batches before the evaluation.
custom_hooks = [dict(type='DetPreciseBNHook', num_iters=200)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000))  # SOLVER.CHECKPOINT_PERIOD
log_processor = dict(by_epoch=False)
