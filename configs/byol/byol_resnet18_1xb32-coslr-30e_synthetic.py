# ORL stage 1 scaled down for a 2-core CPU: ResNet-18 with plain BN on the synthetic scenes
# (tools/data/make_synthetic_scenes.py), 96 px views, batch 32, lr 0.05, 30 epochs, fp32, with the held-out probes
# and monitors of ../_base_/synthetic_probes.py. The same method as ./byol_resnet50_8xb64-coslr-800e_coco.py; each
# fragment says how its part differs. Differs from the fragments: logging and checkpoint intervals, a fixed seed.
_base_ = [
    '../_base_/models/byol_resnet18.py', '../_base_/datasets/synthetic_scenes.py',
    '../_base_/schedules/sgd_coslr-30e_bs32.py', 'mmpretrain::_base_/default_runtime.py',
    '../_base_/synthetic_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5, max_keep_ckpts=2))
randomness = dict(seed=0)
