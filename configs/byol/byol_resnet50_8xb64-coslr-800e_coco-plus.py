# ORL stage 1 on COCO+ (train2017 followed by unlabeled2017); everything else as on COCO
# (official configs/selfsup/orl/cocoplus/stage1/r50_bs512_ep800.py).
# The data sources are those of ../_base_/datasets/coco-plus_scenes.py (mmengine refuses a key
# defined by two bases, so they are restated here rather than inherited a second time).
_base_ = './byol_resnet50_8xb64-coslr-800e_coco.py'
default_scope = 'mmpretrain'
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

train_dataloader = dict(
    dataset=dict(
        ann_file=['annotations/instances_train2017.json', 'annotations/image_info_unlabeled2017.json'],
        data_prefix=[dict(img_path='train2017/'), dict(img_path='unlabeled2017/')]))
