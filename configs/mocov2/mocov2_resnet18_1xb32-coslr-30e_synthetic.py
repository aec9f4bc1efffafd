# A MoCo v2 stage 1 for a 2-core CPU, beside ../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py: ResNet-18 on the
# synthetic scenes, MoCo v2's views at 96 px, batch 32, queue 4,096, SGD lr 0.03, 30 epochs, fp32, with the same
# held-out probes. Differs from the fragments: logging and checkpoint intervals, a fixed seed. Stage 2 mines with it
# through ../orl/stage2/{knn,correspondence}_mocov2-resnet18_1xb64_synthetic.py; why these settings: ./README.md.
#   python tools/train.py configs/mocov2/mocov2_resnet18_1xb32-coslr-30e_synthetic.py
_base_ = [
    '../_base_/models/mocov2_resnet18.py', '../_base_/datasets/synthetic_scenes_mocov2.py',
    '../_base_/schedules/sgd_coslr-30e_bs32_mocov2.py', 'mmpretrain::_base_/default_runtime.py',
    '../_base_/synthetic_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5, max_keep_ckpts=2))
randomness = dict(seed=0)
