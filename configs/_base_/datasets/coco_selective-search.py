# ORL stage 2b on COCO train2017: raw OpenCV selective-search proposals (fast mode, on the
# full-resolution image, no resize) for every image, as ORL; one image per data batch, the search
# runs in the data-loader workers (one OpenCV thread each). The evaluator reports proposal recall
# against the image list's ground truth where it has any (raw, and after ORL's box filter).
# Output: data/coco/orl/selective_search.orlstore.
_base_ = './coco_mining.py'

test_pipeline = [
    _base_.image_loader,
    dict(type='SelectiveSearch', mode='fast', max_size=None, num_threads=1),
]
test_dataloader = dict(batch_size=1, collate_fn=dict(type='pseudo_collate'), dataset=dict(pipeline=test_pipeline))
test_cfg = dict(type='SelectiveSearchLoop', chunk_size=256, log_interval=60)
test_evaluator = dict(
    type='SelectiveSearchMetric',
    out_file=_base_.data_root + 'orl/selective_search.orlstore',
    json_file=None,  # e.g. data_root + 'orl/selective_search.json' for the official format
    iou_thr=0.5,
    filter_cfg=dict(min_size=96, max_ratio=3.0, max_iou=0.5, topk=100))
