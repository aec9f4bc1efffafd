# ORL stage 2c (RoI pair retrieval) on the synthetic scenes with the CPU stage-1 BYOL ResNet-18
# (../../_base_/datasets/synthetic_correspondence.py says how). Every image's kept boxes are
# encoded once, then pairs are matched from the cached embeddings: the official procedure's pairs.
#   python tools/test.py configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py \
#       work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
_base_ = [
    '../../_base_/models/byol_resnet18.py', '../../_base_/datasets/synthetic_correspondence.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs: tools/dist_test.sh uses gloo ranks
