# ORL stage 3 on a folder of images: the COCO recipe (../stage3/orl_resnet50_8xb64-coslr-800e_coco.py)
# on the 2c store mined from the same folder.
_base_ = '../stage3/orl_resnet50_8xb64-coslr-800e_coco.py'

data_root = 'data/images/'
train_dataloader = dict(
    dataset=dict(**_base_.image_folder, correspondence_file=data_root + 'orl/correspondence.orlstore'))
