# BYOL with a ResNet-18 for the CPU configs: the stage-1 model of ./byol_resnet50.py at a smaller
# width (projector 512 -> 1024 -> 128, predictor 128 -> 1024 -> 128) with plain BN (one process).
# Initialised with mmpretrain's defaults (the values below), with which the CPU configs were tuned
# (docs/en/notes/evidence.md, stage 1 on a CPU); the COCO models use the official initialisation.
_base_ = './byol_resnet50.py'

mmpretrain_norm_init = [dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)]
model = dict(
    backbone=dict(
        depth=18, norm_cfg=dict(type='BN'), init_cfg=[dict(type='Kaiming', layer=['Conv2d']), *mmpretrain_norm_init]),
    neck=dict(
        in_channels=512, hid_channels=1024, out_channels=128, norm_cfg=dict(type='BN1d'),
        init_cfg=mmpretrain_norm_init),
    head=dict(
        predictor=dict(
            in_channels=128,
            hid_channels=1024,
            out_channels=128,
            norm_cfg=dict(type='BN1d'),
            init_cfg=mmpretrain_norm_init)))
del mmpretrain_norm_init
