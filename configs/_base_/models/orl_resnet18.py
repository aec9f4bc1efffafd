# ORL stage 3 with a ResNet-18 for the CPU configs: the model of ./orl_resnet50.py on the network
# of ./byol_resnet18.py.
_base_ = './byol_resnet18.py'

model = dict(
    type='ORL',
    end_momentum=0.0,
    global_loss_weight=1.0,
    intra_loss_weight=1.0,
    inter_loss_weight=1.0,
    head=dict(loss=dict(shift_factor=2.0, scale_factor=2.0)))
