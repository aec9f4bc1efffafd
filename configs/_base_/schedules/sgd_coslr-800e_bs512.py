# The schedule of ORL's stages 1 and 3 (paper; official r50_bs512_ep800.py configs): plain SGD,
# lr 0.4, momentum 0.9, weight decay 1e-4 on every parameter, for a total batch of 512 (8 GPUs x
# 64); mixed precision; 800 epochs, a linear warm-up over 4 epochs from lr x 1e-4, then cosine to
# 0, updated every iteration. (mmpretrain's own BYOL configs use LARS with BN and biases excluded
# from weight decay: not the paper's recipe.)
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=1e-4))

max_epochs = 800
warmup_epochs = 4
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=0.,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# lr 0.4 is for a total batch of 512; `--auto-scale-lr` rescales it for other batch sizes.
auto_scale_lr = dict(base_batch_size=512)
