# Stage 2b on the synthetic scenes (CPU demo / tests): same step, small images, 2 workers.
# Output: data/synthetic_scenes/orl/selective_search.orlstore; recall against the scenes' GT.
_base_ = './selective-search_coco.py'

data_root = 'data/synthetic_scenes/'
test_dataloader = dict(num_workers=2, dataset=_base_.synthetic_train)
test_cfg = dict(chunk_size=16, log_interval=10)
# Boxes >= 32 px at 256 px, where COCO's ~640 px images keep >= 96 px (../README.md).
test_evaluator = dict(out_file=data_root + 'orl/selective_search.orlstore', filter_cfg=dict(min_size=32))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
