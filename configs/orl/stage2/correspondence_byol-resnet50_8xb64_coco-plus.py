# ORL stage 2c on COCO+ (train2017 followed by unlabeled2017), as on COCO.
#   bash tools/dist_test.sh configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco-plus.py \
#       work_dirs/byol_resnet50_8xb64-coslr-800e_coco-plus/epoch_800.pth 8
# Inputs: data/coco/orl/coco-plus/{selective_search,knn}.orlstore (2b, 2a), made
# on the same COCO+ image list (or the official JSON files).
_base_ = './correspondence_byol-resnet50_8xb64_coco.py'

orl_dir = _base_.data_root + 'orl/coco-plus/'
test_dataloader = dict(dataset=dict(**_base_.coco_plus, proposal_file='orl/coco-plus/selective_search.orlstore'))
# Differs from its base: the COCO+ image list, its 2a/2b stores and the output (its cache size: ../README.md).
test_cfg = dict(knn_file=orl_dir + 'knn.orlstore')
test_evaluator = dict(out_file=orl_dir + 'correspondence.orlstore')
del orl_dir
