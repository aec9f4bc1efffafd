# Is a long run learning, and is it healthy? The monitors of the COCO pre-training configs (stages 1
# and 3; their COCO+, gpuaug and folder variants inherit them). docs/en/user_guides/running_at_scale.md
# says how to read them.
# - The object probe (first, so that `--cfg-options custom_hooks.0.dataset.ann_file=...` points it at
#   another COCO-format file): kNN top-1 of the backbone's pooled feature on the ground-truth objects
#   of COCO val2017, at most 25 per class, 96 px crops, before training and after every epoch
#   (probe/coco_object_knn_top1). Its cost, measured on the CPU and scaled to a COCO stage-1 epoch
#   on 8 ranks: 0.12 % of the epoch (tools/benchmarks/online_probe_cost.py). Without the file it
#   says so in one line at the start and training goes on.
# - The collapse monitor: effective rank of the projector output on a fixed batch of 128 images
#   every 50 iterations (monitor/projector_rank); a warning after 3 checks in a row below 3.
# - The NaN guard: a NaN or infinite loss stops the run at once with one line naming the iteration
#   and the loss term, before anything saves that step (the last checkpoint stays the last good one).
# - `tensorboard = True` (or `--cfg-options tensorboard=True`) writes every scalar to TensorBoard
#   too (pip install tensorboard).
tensorboard = False
custom_hooks = [
    dict(
        type='CocoObjectProbeHook',
        dataset=dict(
            type='SceneImageDataset',
            data_root='data/coco/',
            ann_file='annotations/instances_val2017.json',
            data_prefix=dict(img_path='val2017/'),
            with_masks=False),
        interval=1,
        max_per_class=25,
        crop_size=96),
    dict(type='CollapseMonitorHook', interval=50, num_samples=128, min_rank=3.0, patience=3),
    dict(type='NaNGuardHook'),
    dict(type='TensorboardSwitchHook'),
]
