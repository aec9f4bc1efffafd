# ORL stage 2c (RoI pair retrieval) on the synthetic scenes, small enough for a CPU.
# Every image's kept boxes are encoded once (phase 1), then pairs are matched from the
# cached embeddings (phase 2): the same pairs as the official per-pair procedure.
# Scaled to the 256 px synthetic images: boxes >= 32 px (96 at COCO scale), crops of 64 px
# (224). Model: the CPU stage-1 BYOL ResNet-18; run with
#   python tools/test.py configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py \
#       work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic/epoch_30.pth
# Inputs: the selective-search and KNN stores of the same image list (stage 2b, 2a).
_base_ = [
    '../../_base_/models/byol_resnet18.py', '../../_base_/datasets/coco_correspondence.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

data_root = 'data/synthetic_scenes/'
crop_size = 64
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], min_size=32),
    dict(_base_.test_pipeline[2], size=crop_size),
]
test_dataloader = dict(
    batch_size=64,  # images per data batch; their crops go through the encoder together
    num_workers=0,
    dataset=dict(**_base_.synthetic_train, pipeline=test_pipeline))
test_cfg = dict(knn_file=data_root + 'orl/knn.orlstore', encode_batch_size=128, embed_cache='auto', chunk_size=64)
test_evaluator = dict(out_file=data_root + 'orl/correspondence.orlstore')
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU: dist_test.sh runs gloo ranks
