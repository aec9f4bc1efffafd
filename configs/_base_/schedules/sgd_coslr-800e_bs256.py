# MoCo v2's schedule (mmpretrain::_base_/schedules/imagenet_sgd_coslr_200e.py): SGD lr 0.03 for a
# total batch of 256 (8 GPUs x 32), momentum 0.9, weight decay 1e-4, cosine to 0 with no warm-up,
# fp32; 800 epochs (the paper's longest, and ORL's stage-1 length, so a MoCo v2 stage 1 sees as many
# COCO views as the BYOL one).
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4))
max_epochs = 800
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0., by_epoch=True, begin=0, end=max_epochs)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# lr 0.03 is for a total batch of 256; `--auto-scale-lr` rescales it for other batch sizes.
auto_scale_lr = dict(base_batch_size=256)
