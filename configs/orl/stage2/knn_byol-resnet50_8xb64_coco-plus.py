# Stage 2a on COCO+ (train2017 followed by unlabeled2017, in that order), with the COCO+
# stage-1 BYOL model; same features and search as knn_byol-resnet50_8xb64_coco.py.
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet50_8xb64-coslr-800e_coco-plus/epoch_800.pth
# Output: data/coco/orl/coco-plus/knn.orlstore.
_base_ = './knn_byol-resnet50_8xb64_coco.py'

test_dataloader = dict(dataset=_base_.coco_plus)
test_evaluator = dict(out_file=_base_.data_root + 'orl/coco-plus/knn.orlstore')
