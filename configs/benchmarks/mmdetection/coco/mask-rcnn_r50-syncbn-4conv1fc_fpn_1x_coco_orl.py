# COCO transfer benchmark of ORL: Mask R-CNN R50-FPN, 1x schedule, in the self-supervised setting
# (SyncBN in the backbone, FPN and both RoI heads, 4conv1fc box head, no frozen stage, BN statistics
# trained), with multi-scale training as detectron2's default FPN recipe that the paper follows.
# The backbone comes straight from a stage-3 (or stage-1) checkpoint: its 'backbone.*' keys are the
# online ResNet-50. Point it at your checkpoint with
#   tools/benchmarks/mmdetection/train.sh THIS_CONFIG CKPT 8
# or --cfg-options model.backbone.init_cfg.checkpoint=CKPT.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
default_scope = 'mmdet'

# The stage-3 COCO run's last checkpoint (configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py).
pretrained = 'work_dirs/orl_resnet50_8xb64-coslr-800e_coco/epoch_800.pth'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
