# Stage 2a on the synthetic scenes, for the CPU models' 96 px views: the step of ./coco_knn.py with
# Resize 110 + CenterCrop 96 (ORL's 256:224 ratio). Output: data/synthetic_scenes/orl/knn.orlstore.
_base_ = './coco_knn.py'

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
