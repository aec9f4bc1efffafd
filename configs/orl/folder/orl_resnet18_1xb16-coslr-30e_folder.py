# ORL stage 3 on a folder of images for a CPU: the CPU recipe of
# ../stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py (ResNet-18, 96 px views, 48 px RoI
# patches, batch 16, 30 epochs) on the 2c store mined from the same folder.
_base_ = '../stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py'

data_root = 'data/images/'
train_dataloader = dict(
    dataset=dict(**_base_.image_folder, correspondence_file=data_root + 'orl/correspondence.orlstore'))
