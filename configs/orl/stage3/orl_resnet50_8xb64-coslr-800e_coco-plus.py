# ORL stage 3 on COCO+ (train2017 + unlabeled2017), otherwise as the COCO config.
# The image list is the two files concatenated in this order; the correspondence
# store must have been mined on the same list (configs/orl/stage2/*_coco-plus.py).
_base_ = './orl_resnet50_8xb64-coslr-800e_coco.py'

train_dataloader = dict(dataset=dict(**_base_.coco_plus, correspondence_file='orl/coco-plus/correspondence.orlstore'))
