# VOC07+12 transfer benchmark of ORL with the paper's protocol: the detectron2 recipe of MoCo's
# detection benchmark that ORL follows (facebookresearch/moco detection/configs/
# pascal_voc_R_50_C4_24k_moco.yaml on Base-RCNN-C4-BN.yaml and detectron2's defaults), field by
# field on mmdet's C4 model; the "transfer protocol" table of docs/en/user_guides/finetuning.md lists each setting.
# Faster R-CNN R50-C4, 24k iterations of 16 images, multi-scale training (short side 480-800),
# trained on VOC2007+2012 trainval with the 'difficult' objects, evaluated on VOC2007 test: AP over
# IoU 0.50:0.95 (pascal_voc/mAP), with AP50 and AP75 beside it. SyncBN everywhere with statistics
# trained and recomputed before the evaluation (PreciseBN), no frozen stage, and an extra norm
# after res5 (mmpretrain's ResLayerExtraNorm, registered in mmdet's registry: detectron2's
# Res5ROIHeadsExtraNorm). The backbone (res2-res4) and the res5 RoI head both load the stage-3
# checkpoint with prefix='backbone.' (why that works: ../../README.md).
#   tools/benchmarks/mmdetection/train.sh THIS_CONFIG CKPT 8     (8 GPUs x 2 images = 16)
# (sets the checkpoint of both init_cfgs; with --cfg-options set
# model.backbone.init_cfg.checkpoint and model.roi_head.shared_head.init_cfg.checkpoint).
_base_ = 'mmdet::pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py'

custom_imports = dict(
    imports=['orl_plugin', 'orl_plugin.transfer', 'mmpretrain.models.utils.res_layer_extra_norm'],
    allow_failed_imports=False)
default_scope = 'mmdet'

# The stage-3 COCO run's last checkpoint (configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py).
pretrained = 'work_dirs/orl_resnet50_8xb64-coslr-800e_coco/epoch_800.pth'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    # the pre-trained ResNet is torchvision-style: RGB, ImageNet mean/std (not caffe's BGR)
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
        bbox_head=dict(num_classes=20)),
    # each ground-truth box's best anchors are positive whatever their IoU, as detectron2's RPN
    # matcher (mmdet: only from IoU 0.3)
    train_cfg=dict(rpn=dict(assigner=dict(min_pos_iou=0.0))))

# detectron2 trains on the 'difficult' objects (mmdet's VOCDataset would ignore them).
train_dataloader = dict(
    dataset=dict(
        datasets=[dict(voc, type='KeepDifficultVOCDataset') for voc in _base_.train_dataloader.dataset.datasets]))

# 24k iterations, lr 0.02 for batch 16, x0.1 at 18k and 22k, linear warm-up over 100 iterations
# from lr x 0.001; weight decay 1e-4 except on norm layers (SOLVER.WEIGHT_DECAY_NORM 0).
max_iter = 24000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iter,
    val_interval=max_iter)  # TEST.EVAL_PERIOD 0: evaluated after training
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iter, milestones=[18000, 22000], gamma=0.1),
]
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.0))
# TEST.PRECISE_BN: BN statistics recomputed over 200 training batches before the evaluation.
custom_hooks = [dict(type='DetPreciseBNHook', num_iters=200)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000, max_keep_ckpts=2))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# AP = mean over IoU 0.50:0.95 (the headline, as self-supervised detection papers report for VOC),
# AP50 (the classic VOC metric) and AP75: detectron2's PascalVOCDetectionEvaluator, 11-point AP
# for VOC2007.
val_evaluator = dict(
    type='VOCMetric',
    metric='mAP',
    eval_mode='11points',
    iou_thrs=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
test_evaluator = val_evaluator
