# ORL stage 3 on COCO train2017 with the contrastive objective in every branch
# (../../_base_/models/orl-mocov2_resnet50.py: MoCo v2's projector, a queue of 65,536 keys per branch,
# temperature 0.2, key-encoder momentum 0.999), the paper's data and schedule length (800 epochs, batch
# 8 x 64) with MoCo v2's optimiser: SGD lr 0.03 per 256 images (0.06 here), momentum 0.9, weight decay
# 1e-4, cosine to 0 without warm-up; mixed precision as the paper's stage 3. The data and loader are
# those of ./orl_resnet50_8xb64-coslr-800e_coco.py.
_base_ = [
    '../../_base_/models/orl-mocov2_resnet50.py', '../../_base_/datasets/coco_orl.py',
    '../../_base_/schedules/sgd_coslr-800e_bs256.py', 'mmpretrain::_base_/default_runtime.py',
    '../../_base_/coco_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(lr=0.06))
auto_scale_lr = dict(base_batch_size=512)

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=10, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)

train_pipeline = [
    _base_.train_pipeline[0],
    dict(_base_.train_pipeline[1], photometric='opencv'),
    _base_.train_pipeline[2],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, imdecode_backend='cv2'))
