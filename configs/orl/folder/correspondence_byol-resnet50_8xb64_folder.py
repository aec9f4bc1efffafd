# Stage 2c on a folder of images: RoI pair retrieval as on COCO
# (../stage2/correspondence_byol-resnet50_8xb64_coco.py: boxes >= 96 px, aspect <= 3, IoU <= 0.5,
# first 100; 224 px crops). Inputs: the 2b and 2a stores of the same folder.
_base_ = '../stage2/correspondence_byol-resnet50_8xb64_coco.py'

data_root = 'data/images/'
test_dataloader = dict(dataset=dict(**_base_.image_folder, proposal_file=data_root + 'orl/selective_search.orlstore'))
test_cfg = dict(knn_file=data_root + 'orl/knn.orlstore')
test_evaluator = dict(out_file=data_root + 'orl/correspondence.orlstore')
