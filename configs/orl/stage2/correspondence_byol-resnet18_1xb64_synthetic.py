# ORL stage 2c (RoI pair retrieval) on the synthetic scenes, small enough for a CPU.
# Every image's kept boxes are encoded once (phase 1), then pairs are matched from the
# cached embeddings (phase 2): the same pairs as the official per-pair procedure.
# Scaled to the 256 px synthetic images: boxes >= 32 px (96 at COCO scale), crops of 64 px
# (224). Model: the CPU stage-1 BYOL ResNet-18; run with
#   python tools/test.py configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py \
#       work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
# Inputs: the selective-search and KNN stores of the same image list (stage 2b, 2a).
_base_ = ['../../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py']

default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

# Only the stage-1 model is needed: drop the inherited training settings, which 2c never uses
# (and which would make the config dump that every run writes several times larger).
view_pipeline1 = view_pipeline2 = train_pipeline = None
train_dataloader = train_cfg = optim_wrapper = param_scheduler = auto_scale_lr = None

data_root = 'data/synthetic_scenes/'
crop_size = 64

test_pipeline = [
    # Decoded with PIL like the official code (it opens images with PIL).
    dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
    dict(type='FilterBoxes', min_size=32, max_ratio=3.0, max_iou=0.5, topk=100),
    dict(type='CropBoxes', size=crop_size),
]
test_dataloader = dict(
    batch_size=64,  # images per data batch; their crops go through the encoder together
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    # one sample = a variable number of crops: keep lists, the loop concatenates them
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='ProposalDataset',
        proposal_file='orl/selective_search.orlstore',
        ann_file='annotations/instances_train.json',
        data_root=data_root,
        data_prefix=dict(img_path='images/'),
        pipeline=test_pipeline))
test_cfg = dict(
    type='CorrespondenceLoop',
    knn_file=data_root + 'orl/knn.orlstore',
    knn_image_num=10,
    topk_bbox_ratio=0.1,
    encode_batch_size=128,
    embed_cache='auto',
    embed_dtype='float32',
    chunk_size=64)
test_evaluator = dict(
    type='CorrespondenceMetric',
    out_file=data_root + 'orl/correspondence.orlstore',
    json_file=None)  # e.g. data_root + 'orl/correspondence.json' for the official format
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU: dist_test.sh runs gloo ranks
