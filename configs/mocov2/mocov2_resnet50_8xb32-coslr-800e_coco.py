# A MoCo v2 stage 1 for ORL on COCO train2017: mmpretrain's MoCo v2
# (mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py) on ORL's scene list, 8 GPUs x 32 images = 256,
# SGD lr 0.03, cosine to 0, 800 epochs, with the COCO monitors; the fragments under ../_base_/ hold all of it.
# Differs from them: logging and checkpoint intervals. Stage 2 mines with it through
# ../orl/stage2/{knn,correspondence}_mocov2-resnet50_8xb32_coco.py.
#   bash tools/dist_train.sh configs/mocov2/mocov2_resnet50_8xb32-coslr-800e_coco.py 8
_base_ = [
    '../_base_/models/mocov2_resnet50.py', '../_base_/datasets/coco_scenes_mocov2.py',
    '../_base_/schedules/sgd_coslr-800e_bs256.py', 'mmpretrain::_base_/default_runtime.py', '../_base_/coco_probes.py'
]
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=10, max_keep_ckpts=3))
