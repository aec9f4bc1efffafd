# Stage 2c on the synthetic scenes, small enough for a CPU: the step of ./coco_correspondence.py
# scaled to the 256 px images: boxes >= 32 px (96 at COCO scale), crops of 64 px (224).
# Inputs: data/synthetic_scenes/orl/{selective_search,knn}.orlstore (2b, 2a).
_base_ = './coco_correspondence.py'

data_root = 'data/synthetic_scenes/'
crop_size = 64
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], min_size=32),
    dict(_base_.test_pipeline[2], size=crop_size),
]
test_dataloader = dict(
    batch_size=64,  # images per data batch; their crops go through the encoder together
    num_workers=0,
    dataset=dict(**_base_.synthetic_train, pipeline=test_pipeline))
test_cfg = dict(knn_file=data_root + 'orl/knn.orlstore', encode_batch_size=128, embed_cache='auto', chunk_size=64)
test_evaluator = dict(out_file=data_root + 'orl/correspondence.orlstore')
