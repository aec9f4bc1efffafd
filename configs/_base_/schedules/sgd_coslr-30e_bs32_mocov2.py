# MoCo v2's schedule of ./sgd_coslr-800e_bs256.py for the CPU configs: batch 32, 30 epochs, no
# warm-up, lr 0.03 kept (not the linear rule's 0.00375; why: configs/mocov2/README.md).
_base_ = './sgd_coslr-800e_bs256.py'

max_epochs = 30
param_scheduler = [dict(_base_.param_scheduler[0], T_max=max_epochs, end=max_epochs)]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32)
