# ORL stage 1 (image-level BYOL) scaled down for a 2-core CPU: ResNet-18 on the synthetic scenes
# (tools/data/make_synthetic_scenes.py), 96 px views, batch 32, 30 epochs, fp32, plain BN.
# Same method as byol_resnet50_8xb64-coslr-800e_coco.py (the fragments say how each part differs).
_base_ = [
    '../_base_/models/byol_resnet18.py', '../_base_/datasets/synthetic_scenes.py',
    '../_base_/schedules/sgd_coslr-30e_bs32.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5, max_keep_ckpts=2))

# Is it learning? Before training and every 5 epochs, on the held-out split: classify its object
# crops by kNN over the train split's crops (probe/object_knn_top1), and find each image's second
# view among all images' views (probe/view_top1), both with the online backbone; the rank of
# those view features (probe/view_rank) falls when they collapse into a few directions.
val_split = dict(_base_.synthetic_train, ann_file='annotations/instances_val.json')
custom_hooks = [
    dict(
        type='ObjectProbeHook',
        reference=dict(type='SceneImageDataset', **_base_.synthetic_train),
        query=dict(type='SceneImageDataset', **val_split),
        interval=5,
        crop_size=64),
    dict(type='ViewRetrievalHook', dataset=dict(type='SceneImageDataset', **val_split), interval=5, max_images=256),
]
del val_split

# A fixed seed: the random initialisation, and so the probes' starting values, repeat run to run.
randomness = dict(seed=0)
