# Stage 2b on COCO+ (train2017 followed by unlabeled2017, in that order: positions index
# the later KNN/correspondence files). Output: data/coco/orl/coco-plus/selective_search.orlstore.
_base_ = './selective-search_coco.py'

test_dataloader = dict(dataset=_base_.coco_plus)
test_evaluator = dict(out_file=_base_.data_root + 'orl/coco-plus/selective_search.orlstore')
