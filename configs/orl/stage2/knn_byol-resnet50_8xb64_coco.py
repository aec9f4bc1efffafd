# Stage 2a: KNN image retrieval with the stage-1 BYOL model (ORL): online backbone -> global
# average pool -> projector (256-d) -> L2 norm on Resize 256 + CenterCrop 224; exact cosine
# top-10 other images (faiss IndexFlatIP, the query excluded by index).
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet50_8xb64-coslr-800e_coco/epoch_800.pth
#   tools/dist_test.sh THIS_CONFIG CHECKPOINT 8
# Output: data/coco/orl/knn.orlstore (add test_evaluator.json_file=... for the official JSON).
_base_ = '../../byol/byol_resnet50_8xb64-coslr-800e_coco.py'

data_root = 'data/coco/'
test_pipeline = [
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
    # torchvision Resize(256) + CenterCrop(224) on PIL images, as the official notebook.
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='SceneImageDataset',
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img_path='train2017/'),
        pipeline=test_pipeline,
        test_mode=True))
test_cfg = dict(type='KNNMiningLoop', feature='neck', chunk_size=1024, log_interval=60)
test_evaluator = dict(
    type='KNNMetric',
    out_file=data_root + 'orl/knn.orlstore',
    json_file=None,  # e.g. data_root + 'orl/knn.json' for the official format
    k=10,
    use_gpu='auto')
