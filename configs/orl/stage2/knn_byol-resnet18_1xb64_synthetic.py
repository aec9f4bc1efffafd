# Stage 2a on the synthetic scenes (CPU demo / tests) with the small stage-1 BYOL ResNet-18
# (../../_base_/datasets/synthetic_knn.py says how).
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
# Output: data/synthetic_scenes/orl/knn.orlstore; category precision against the scenes' GT.
_base_ = [
    '../../_base_/models/byol_resnet18.py', '../../_base_/datasets/synthetic_knn.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs: tools/dist_test.sh uses gloo ranks
