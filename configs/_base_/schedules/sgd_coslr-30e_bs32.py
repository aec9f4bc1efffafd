# The schedule of ./sgd_coslr-800e_bs512.py scaled down for the CPU configs: lr 0.05 for a batch of
# 32, fp32, 30 epochs with a 1-epoch warm-up.
_base_ = './sgd_coslr-800e_bs512.py'

optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(_base_.optim_wrapper.optimizer, lr=0.05))
max_epochs = 30
warmup_epochs = 1
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_epochs),
    dict(_base_.param_scheduler[1], T_max=max_epochs - warmup_epochs, begin=warmup_epochs, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32)
