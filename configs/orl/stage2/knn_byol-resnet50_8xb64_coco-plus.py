# Stage 2a on COCO+ (train2017 followed by unlabeled2017, in that order), with the COCO+
# stage-1 BYOL model; same features and search as knn_byol-resnet50_8xb64_coco.py.
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet50_8xb64-coslr-800e_coco-plus/epoch_800.pth
# Output: data/coco/orl/coco-plus/knn.orlstore.
_base_ = '../../byol/byol_resnet50_8xb64-coslr-800e_coco-plus.py'

data_root = 'data/coco/'
test_pipeline = [
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
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
        ann_file=[
            'annotations/instances_train2017.json',
            'annotations/image_info_unlabeled2017.json'
        ],
        data_prefix=[dict(img_path='train2017/'), dict(img_path='unlabeled2017/')],
        pipeline=test_pipeline,
        test_mode=True))
test_cfg = dict(type='KNNMiningLoop', feature='neck', chunk_size=1024, log_interval=60)
test_evaluator = dict(
    type='KNNMetric',
    out_file=data_root + 'orl/coco-plus/knn.orlstore',
    json_file=None,
    k=10,
    use_gpu='auto')
