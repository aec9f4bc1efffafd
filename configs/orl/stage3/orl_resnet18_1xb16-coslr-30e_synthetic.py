# ORL stage 3 on the synthetic scenes, small enough for a CPU (2 cores, minutes):
# ResNet-18 with plain BN, image views of 96 px and RoI patches of 48 px, batch 16,
# 30 epochs. Same method and pipelines as the COCO config otherwise.
# Needs data/synthetic_scenes (tools/data/make_synthetic_scenes.py) and its stage-2
# correspondence store data/synthetic_scenes/orl/correspondence.orlstore
# (configs/orl/stage2/correspondence_*_synthetic.py).
_base_ = [
    '../../_base_/models/orl_resnet18.py', '../../_base_/datasets/synthetic_orl.py',
    '../../_base_/schedules/sgd_coslr-30e_bs32.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

# Differs from the fragments: lr 0.025, the stage-1 CPU config's 0.05 at batch 32 scaled linearly to 16.
optim_wrapper = dict(optimizer=dict(lr=0.025))
auto_scale_lr = dict(base_batch_size=16)

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=2))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
