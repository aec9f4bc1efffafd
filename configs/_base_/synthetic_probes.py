# Is stage 1 learning? The held-out probes of the CPU stage-1 configs (BYOL, MoCo v2). Before
# training and every 5 epochs, on the held-out split of the synthetic scenes: classify its object
# crops by kNN over the train split's crops (probe/object_knn_top1), and find each image's second
# view among all images' views (probe/view_top1), both with the online backbone; the rank of those
# view features (probe/view_rank) falls when they collapse into a few directions.
# Every 10 iterations, the effective rank of the projector output on a fixed batch of 64 images
# (monitor/projector_rank; a warning after 3 checks in a row below 3): BYOL's early phase shows
# in it (from about 20 to 2-3 within 2 epochs). A NaN or infinite loss stops the run at once;
# `tensorboard = True` writes every scalar to TensorBoard too (docs/en/user_guides/running_at_scale.md).
tensorboard = False
custom_hooks = [
    dict(
        type='ObjectProbeHook',
        reference=dict(
            type='SceneImageDataset',
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img_path='images/')),
        query=dict(
            type='SceneImageDataset',
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img_path='images/')),
        interval=5,
        crop_size=64),
    dict(
        type='ViewRetrievalHook',
        dataset=dict(
            type='SceneImageDataset',
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img_path='images/')),
        interval=5,
        max_images=256),
    dict(type='CollapseMonitorHook', interval=10, num_samples=64, min_rank=3.0, patience=3),
    dict(type='NaNGuardHook'),
    dict(type='TensorboardSwitchHook'),
]
