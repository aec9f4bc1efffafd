# Stage 2b on COCO+ (train2017 followed by unlabeled2017, in that order: positions index
# the later KNN/correspondence files). Output: data/coco/orl/coco-plus/selective_search.orlstore.
_base_ = './selective-search_coco.py'

test_dataloader = dict(
    dataset=dict(
        ann_file=[
            'annotations/instances_train2017.json',
            'annotations/image_info_unlabeled2017.json'
        ],
        data_prefix=[dict(img_path='train2017/'), dict(img_path='unlabeled2017/')]))
test_evaluator = dict(out_file='data/coco/orl/coco-plus/selective_search.orlstore')
