# Stage 2a: KNN image retrieval with the stage-1 BYOL model (ORL), on COCO train2017
# (../../_base_/datasets/coco_knn.py says how).
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet50_8xb64-coslr-800e_coco/epoch_800.pth
#   tools/dist_test.sh THIS_CONFIG CHECKPOINT 8
# Output: data/coco/orl/knn.orlstore (add test_evaluator.json_file=... for the official JSON).
_base_ = [
    '../../_base_/models/byol_resnet50.py', '../../_base_/datasets/coco_knn.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
