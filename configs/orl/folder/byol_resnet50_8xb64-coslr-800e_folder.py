# ORL stage 1 on a folder of images (recursive, no annotations): the COCO recipe
# (../../byol/byol_resnet50_8xb64-coslr-800e_coco.py: ResNet-50, 224 px views, 8 GPUs x 64,
# 800 epochs) on the folder's images, sorted by path. `orl-pipeline folder --data-root DIR` runs
# this recipe with stages 2a-3 on GPUs (orl_plugin/pipeline/presets.py says when).
_base_ = '../../byol/byol_resnet50_8xb64-coslr-800e_coco.py'

data_root = 'data/images/'
train_dataloader = dict(dataset=_base_.image_folder)
