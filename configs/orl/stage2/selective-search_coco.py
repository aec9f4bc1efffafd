# Stage 2b: raw OpenCV selective-search proposals (fast mode, full-resolution BGR image) for
# every COCO train2017 image, as ORL. No checkpoint: `python tools/test.py THIS_CONFIG`
# (or `tools/dist_test.sh THIS_CONFIG N`). Output: data/coco/orl/selective_search.orlstore.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

data_root = 'data/coco/'

# The step has no network; the model is the selective-search proposer itself (no
# parameters, so plain DDP would refuse it: the separate wrapper leaves it unwrapped).
model = dict(type='SelectiveSearchProposer', mode='fast')
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel')

test_pipeline = [
    # pillow decoding = the official PIL loading (and no EXIF rotation, like COCO's boxes).
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
    # Runs in the data-loader workers (one OpenCV thread each).
    dict(type='SelectiveSearch', mode='fast', max_size=None, num_threads=1),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=8,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='SceneImageDataset',
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img_path='train2017/'),
        pipeline=test_pipeline,
        test_mode=True))
test_cfg = dict(type='SelectiveSearchLoop', chunk_size=256, log_interval=60)
test_evaluator = dict(
    type='SelectiveSearchMetric',
    out_file=data_root + 'orl/selective_search.orlstore',
    json_file=None,  # e.g. data_root + 'orl/selective_search.json' for the official format
    iou_thr=0.5,
    filter_cfg=dict(min_size=96, max_ratio=3.0, max_iou=0.5, topk=100))

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
log_level = 'INFO'
load_from = None
resume = False
