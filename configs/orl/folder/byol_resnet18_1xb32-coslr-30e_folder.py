# ORL stage 1 on a folder of images for a CPU (a laptop try): the CPU recipe of
# ../../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py (ResNet-18, 96 px views, batch 32,
# 30 epochs, lr 0.05) on the folder's images. `orl-pipeline folder --data-root DIR` runs it
# where no GPU is visible.
_base_ = '../../byol/byol_resnet18_1xb32-coslr-30e_synthetic.py'

data_root = 'data/images/'
train_dataloader = dict(dataset=_base_.image_folder)

# A folder has no boxes and no held-out split. The object probe needs boxes: left out. View
# retrieval needs no labels: with no dataset it takes the first 256 training images (not held
# out, which the log says); its feature rank, the label-free sign of collapse, is unaffected.
# The other monitors (collapse monitor, NaN guard, TensorBoard switch) stay.
monitors = [h for h in _base_.custom_hooks if h['type'] not in ('ObjectProbeHook', 'ViewRetrievalHook')]
custom_hooks = [dict(type='ViewRetrievalHook', dataset=None, interval=5, max_images=256), *monitors]
del monitors
