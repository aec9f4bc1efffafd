# Stage 2a on the synthetic scenes with the CPU MoCo v2 stage 1
# (../../mocov2/mocov2_resnet18_1xb32-coslr-30e_synthetic.py) in place of BYOL: the same step as
# ./knn_byol-resnet18_1xb64_synthetic.py, only the model differs.
#   python tools/test.py THIS_CONFIG work_dirs/mocov2_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
_base_ = [
    '../../_base_/models/mocov2_resnet18.py', '../../_base_/datasets/synthetic_knn.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs: tools/dist_test.sh uses gloo ranks
