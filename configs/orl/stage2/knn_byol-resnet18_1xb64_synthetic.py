# Stage 2a on the synthetic scenes (CPU demo / tests) with the small stage-1 BYOL ResNet-18.
# Same step as the COCO config, scaled to the CPU model's 96-px views (Resize 110 + CenterCrop
# 96 keeps ORL's 256:224 ratio).
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
# Output: data/synthetic_scenes/orl/knn.orlstore; category precision against the scenes' GT.
_base_ = [
    '../../_base_/models/byol_resnet18.py', '../../_base_/datasets/coco_knn.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

data_root = 'data/synthetic_scenes/'
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], scale=110),
    dict(_base_.test_pipeline[2], crop_size=96),
    _base_.test_pipeline[3],
]
test_dataloader = dict(num_workers=2, dataset=dict(**_base_.synthetic_train, pipeline=test_pipeline))
test_cfg = dict(chunk_size=256, log_interval=10)
test_evaluator = dict(out_file=data_root + 'orl/knn.orlstore')
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs: tools/dist_test.sh uses gloo
