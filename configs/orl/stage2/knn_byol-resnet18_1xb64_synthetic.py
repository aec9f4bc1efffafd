# Stage 2a on the synthetic scenes (CPU demo / tests) with the small stage-1 BYOL ResNet-18.
# Same step as the COCO config, scaled to the CPU model's 96-px views (Resize 110 + CenterCrop
# 96 keeps ORL's 256:224 ratio).
#   python tools/test.py THIS_CONFIG work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
# Output: data/synthetic_scenes/orl/knn.orlstore; category precision against the scenes' GT.
_base_ = '../../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py'

data_root = 'data/synthetic_scenes/'
test_pipeline = [
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=110, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=96),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='SceneImageDataset',
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img_path='images/'),
        pipeline=test_pipeline,
        test_mode=True))
test_cfg = dict(type='KNNMiningLoop', feature='neck', chunk_size=256, log_interval=10)
test_evaluator = dict(
    type='KNNMetric',
    out_file=data_root + 'orl/knn.orlstore',
    json_file=None,
    k=10,
    use_gpu='auto')
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs: tools/dist_test.sh uses gloo
