# The image lists ORL pre-trains and mines on, written once: every stage's data set (stage 1
# SceneImageDataset, stage 2 SceneImageDataset / ProposalDataset, stage 3 ORLDataset) takes one of
# them, and the mined files index its images by position. A config switches lists with e.g.
#   train_dataloader = dict(dataset=_base_.coco_plus)
# Every stage decodes their images the same way: `image_loader` in the pipelines, and its decoder
# in the data sets that read images themselves (ORLDataset). PIL, as the official code's
# Image.open(path).convert('RGB'); LoadImageOrSkip's docstring says how it treats EXIF orientation
# (the official code ignores it, so the boxes of official files are in raw pixel orientation).
image_loader = dict(type='LoadImageOrSkip', imdecode_backend='pillow')
data_root = 'data/coco/'
coco_train2017 = dict(
    data_root=data_root, ann_file='annotations/instances_train2017.json', data_prefix=dict(img_path='train2017/'))
# COCO+ = COCO train2017 followed by COCO unlabeled2017 (no annotations), in this order:
# positions 0..118286 are train2017, then unlabeled2017, as in the official ORL COCO+ files.
coco_plus = dict(
    coco_train2017,
    ann_file=['annotations/instances_train2017.json', 'annotations/image_info_unlabeled2017.json'],
    data_prefix=[dict(img_path='train2017/'), dict(img_path='unlabeled2017/')])
# The synthetic scenes' train split (tools/data/make_synthetic_scenes.py), for the CPU configs.
synthetic_train = dict(
    data_root='data/synthetic_scenes/',
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img_path='images/'))
# Any folder of images, searched recursively (jpg, jpeg, png, bmp, webp, tif...), sorted by relative
# path; no annotations. The folder configs (configs/orl/folder/) plug it in; `orl-pipeline folder
# --data-root DIR` points it at DIR. (The folder is the image prefix, not the data root: a data set
# joins an empty prefix to nothing.)
image_folder = dict(data_root='', ann_file='', data_prefix=dict(img_path='data/images/'))
