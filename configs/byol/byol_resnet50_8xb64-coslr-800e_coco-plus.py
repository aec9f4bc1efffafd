# ORL stage 1 on COCO+ (train2017 followed by unlabeled2017; official
# configs/selfsup/orl/cocoplus/stage1/r50_bs512_ep800.py). Differs from ./byol_resnet50_8xb64-coslr-800e_coco.py
# only in its image list.
_base_ = './byol_resnet50_8xb64-coslr-800e_coco.py'

train_dataloader = dict(dataset=_base_.coco_plus)
