# Stage 2b: raw OpenCV selective-search proposals for every COCO train2017 image, as ORL
# (../../_base_/datasets/coco_selective-search.py says how). No checkpoint:
# `python tools/test.py THIS_CONFIG` (or `tools/dist_test.sh THIS_CONFIG N`).
# Output: data/coco/orl/selective_search.orlstore.
_base_ = ['../../_base_/datasets/coco_selective-search.py', 'mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)

# No network: the model is the parameter-free selective-search proposer, left unwrapped (why: ../README.md).
model = dict(type='SelectiveSearchProposer', mode='fast')
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel')

default_hooks = dict(logger=dict(interval=50))
