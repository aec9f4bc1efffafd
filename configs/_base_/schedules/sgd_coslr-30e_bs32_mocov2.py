# MoCo v2's schedule of ./sgd_coslr-800e_bs256.py for the CPU configs: batch 32, 30 epochs, no
# warm-up. lr stays 0.03 (not the linear-scaling 0.00375): at batch 32 MoCo's queue, not the batch,
# holds the negatives, and the smaller rate barely moves the CPU model in 30 epochs.
_base_ = './sgd_coslr-800e_bs256.py'

max_epochs = 30
param_scheduler = [dict(_base_.param_scheduler[0], T_max=max_epochs, end=max_epochs)]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32)
