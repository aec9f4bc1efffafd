# ORL stage 1 (image-level BYOL) scaled down for a 2-core CPU: ResNet-18 on the synthetic scenes
# (tools/data/make_synthetic_scenes.py), 96 px views, batch 32, 30 epochs, fp32, plain BN.
# Same method as byol_resnet50_8xb64-coslr-800e_coco.py (the fragments say how each part differs).
_base_ = [
    '../_base_/models/byol_resnet18.py', '../_base_/datasets/synthetic_scenes.py',
    '../_base_/schedules/sgd_coslr-30e_bs32.py', 'mmpretrain::_base_/default_runtime.py',
    '../_base_/synthetic_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5, max_keep_ckpts=2))
# A fixed seed: the random initialisation, and so the probes' starting values (../_base_/synthetic_probes.py),
# repeat run to run.
randomness = dict(seed=0)
