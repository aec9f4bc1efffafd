# Stage 2a on a folder of images for a CPU: the CPU step of
# ../stage2/knn_byol-resnet18_1xb64_synthetic.py (Resize 110 + CenterCrop 96, the CPU model's
# view size) on the folder. Output: <folder>/orl/knn.orlstore (the pipeline: its work dir).
_base_ = '../stage2/knn_byol-resnet18_1xb64_synthetic.py'

data_root = 'data/images/'
test_dataloader = dict(dataset=_base_.image_folder)
test_evaluator = dict(out_file=data_root + 'orl/knn.orlstore')
