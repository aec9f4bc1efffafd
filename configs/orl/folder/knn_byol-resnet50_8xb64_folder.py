# Stage 2a on a folder of images: KNN image retrieval as on COCO
# (../stage2/knn_byol-resnet50_8xb64_coco.py). No labels, so no category precision.
# Output: <folder>/orl/knn.orlstore (the pipeline writes into its work dir instead).
_base_ = '../stage2/knn_byol-resnet50_8xb64_coco.py'

data_root = 'data/images/'
test_dataloader = dict(dataset=_base_.image_folder)
test_evaluator = dict(out_file=data_root + 'orl/knn.orlstore')
