# COCO+ = COCO train2017 followed by COCO unlabeled2017 (no annotations), in this order:
# positions 0..118286 are train2017, then unlabeled2017, as in the official ORL COCO+ files.
_base_ = './coco_scenes.py'

train_dataloader = dict(
    dataset=dict(
        ann_file=['annotations/instances_train2017.json', 'annotations/image_info_unlabeled2017.json'],
        data_prefix=[dict(img_path='train2017/'), dict(img_path='unlabeled2017/')]))
