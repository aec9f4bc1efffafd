# ORL stage 2c (RoI pair retrieval) on COCO train2017, paper settings: boxes >= 96 px, aspect
# ratio <= 3, greedy IoU <= 0.5, first 100 boxes per image; 224 px bilinear crops; online
# backbone + global average pool + L2; k = 10 neighbours; top max(1, int(0.1 * B)) pairs.
# Every image's boxes are encoded ONCE (phase 1, cached on disk under the work dir, resumable),
# then pairs are matched from the cached embeddings (phase 2); the official release instead
# re-encodes each neighbour for every query (about 11x the forwards).
# 8xb64: 8 GPUs, 64 RoI crops per backbone forward. Run (any number of GPUs, one command):
#   bash tools/dist_test.sh configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco.py \
#       work_dirs/byol_resnet50_8xb64-coslr-800e_coco/epoch_800.pth 8
# Inputs: data/coco/orl/selective_search.orlstore and data/coco/orl/knn.orlstore (2b, 2a),
# native stores or the official JSON files.
_base_ = ['../../byol/byol_resnet50_8xb64-coslr-800e_coco.py']

default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

# Only the stage-1 model is needed: drop the inherited training settings, which 2c never uses
# (and which would make the config dump that every run writes several times larger).
view_pipeline1 = view_pipeline2 = train_pipeline = None
train_dataloader = train_cfg = optim_wrapper = param_scheduler = auto_scale_lr = None

data_root = 'data/coco/'

test_pipeline = [
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),  # PIL, like the official code
    dict(type='FilterBoxes', min_size=96, max_ratio=3.0, max_iou=0.5, topk=100),
    dict(type='CropBoxes', size=224),
]
test_dataloader = dict(
    batch_size=4,  # images per data batch (up to 400 crops)
    num_workers=8,
    persistent_workers=False,
    pin_memory=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='ProposalDataset',
        proposal_file='orl/selective_search.orlstore',
        ann_file='annotations/instances_train2017.json',
        data_root=data_root,
        data_prefix=dict(img_path='train2017/'),
        pipeline=test_pipeline))
test_cfg = dict(
    type='CorrespondenceLoop',
    knn_file=data_root + 'orl/knn.orlstore',
    knn_image_num=10,
    topk_bbox_ratio=0.1,
    encode_batch_size=64,
    embed_cache='disk',
    # float32 keeps the pairs exactly those of the official fp32 procedure; float16 halves the
    # cache (about 35 GB instead of 70 GB for COCO train2017 at 2048-d).
    embed_dtype='float32',
    chunk_size=512)
test_evaluator = dict(
    type='CorrespondenceMetric',
    out_file=data_root + 'orl/correspondence.orlstore',
    # data_root + 'orl/correspondence.json' to also write the official JSON
    json_file=None)
