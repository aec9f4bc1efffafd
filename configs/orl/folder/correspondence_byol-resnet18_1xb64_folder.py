# Stage 2c on a folder of images for a CPU. Differs from ../stage2/correspondence_byol-resnet18_1xb64_synthetic.py:
# the folder's images and stores, the COCO box filter (boxes >= 96 px), 96 px crops (the CPU model's view size) and
# two loader workers. Why: ../README.md.
_base_ = '../stage2/correspondence_byol-resnet18_1xb64_synthetic.py'

data_root = 'data/images/'
crop_size = 96
test_pipeline = [
    _base_.test_pipeline[0],
    dict(_base_.test_pipeline[1], min_size=96),
    dict(_base_.test_pipeline[2], size=crop_size),
]
test_dataloader = dict(
    num_workers=2,
    dataset=dict(
        **_base_.image_folder, proposal_file=data_root + 'orl/selective_search.orlstore', pipeline=test_pipeline))
test_cfg = dict(knn_file=data_root + 'orl/knn.orlstore')
test_evaluator = dict(out_file=data_root + 'orl/correspondence.orlstore')
