# ORL stage 2c (RoI pair retrieval) on COCO train2017 with the stage-1 BYOL model, paper settings
# (../../_base_/datasets/coco_correspondence.py says how; every image's boxes are encoded once).
# 8xb64: 8 GPUs, 64 RoI crops per backbone forward. Run (any number of GPUs, one command):
#   bash tools/dist_test.sh configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco.py \
#       work_dirs/byol_resnet50_8xb64-coslr-800e_coco/epoch_800.pth 8
# Inputs: data/coco/orl/selective_search.orlstore and data/coco/orl/knn.orlstore (2b, 2a),
# native stores or the official JSON files.
_base_ = [
    '../../_base_/models/byol_resnet50.py', '../../_base_/datasets/coco_correspondence.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)
