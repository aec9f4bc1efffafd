# ORL stage 1 on a folder of images for a CPU (a laptop try): the CPU recipe of
# ../../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py (ResNet-18, 96 px views, batch 32,
# 30 epochs, lr 0.05) on the folder's images. `orl-pipeline folder --data-root DIR` runs it
# where no GPU is visible.
_base_ = '../../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py'

data_root = 'data/images/'
train_dataloader = dict(dataset=_base_.image_folder)

# The monitors differ: no object probe (a folder has no boxes), view retrieval on the first 256 training images
# (no held-out split; the log says so); the collapse monitor, NaN guard and TensorBoard switch stay (../README.md).
monitors = [h for h in _base_.custom_hooks if h['type'] not in ('ObjectProbeHook', 'ViewRetrievalHook')]
custom_hooks = [dict(type='ViewRetrievalHook', dataset=None, interval=5, max_images=256), *monitors]
del monitors
