# ORL stage 1 on COCO+ (train2017 followed by unlabeled2017); everything else as on COCO
# (official configs/selfsup/orl/cocoplus/stage1/r50_bs512_ep800.py).
_base_ = './byol_resnet50_8xb64-coslr-800e_coco.py'

train_dataloader = dict(dataset=_base_.coco_plus)
