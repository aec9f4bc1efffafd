# ORL stage 3 with the contrastive objective (../../_base_/models/orl-mocov2_resnet18.py) on the
# synthetic scenes, on a CPU: the data of ./orl_resnet18_1xb16-coslr-30e_synthetic.py at batch 32,
# MoCo v2's CPU schedule (SGD lr 0.03, cosine, no warm-up; the stage-1 MoCo v2 CPU config's).
_base_ = [
    '../../_base_/models/orl-mocov2_resnet18.py', '../../_base_/datasets/synthetic_orl.py',
    '../../_base_/schedules/sgd_coslr-30e_bs32_mocov2.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

train_dataloader = dict(batch_size=32)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=2))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
