# Is stage 1 learning? The held-out probes of the CPU stage-1 configs (BYOL, MoCo v2). Before
# training and every 5 epochs, on the held-out split of the synthetic scenes: classify its object
# crops by kNN over the train split's crops (probe/object_knn_top1), and find each image's second
# view among all images' views (probe/view_top1), both with the online backbone; the rank of those
# view features (probe/view_rank) falls when they collapse into a few directions.
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
]
