# Stage 2a on COCO train2017 with a MoCo v2 stage 1
# (../../mocov2/mocov2_resnet50_8xb32-coslr-800e_coco.py) in place of BYOL: the same step as
# ./knn_byol-resnet50_8xb64_coco.py, only the model differs.
#   bash tools/dist_test.sh THIS_CONFIG work_dirs/mocov2_resnet50_8xb32-coslr-800e_coco/epoch_800.pth 8
_base_ = [
    '../../_base_/models/mocov2_resnet50.py', '../../_base_/datasets/coco_knn.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
