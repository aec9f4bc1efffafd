# MEASURING INSTRUMENT, NOT ORL. Stage 2c on the synthetic scenes with the instrument's checkpoint
# (./instrument-gt-classifier_resnet18_1xb32-coslr-6e_synthetic-crops.py, trained with ground-truth
# labels) in place of a stage-1 model: the pairs mining would find with a perfect stage 1: is 2c correct?
# The step is configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py's; only the model differs.
# From the repository root (on PYTHONPATH: the config imports projects.orl_evidence):
#   PYTHONPATH=. python tools/test.py THIS_CONFIG \
#       work_dirs/instrument-gt-classifier_resnet18_1xb32-coslr-6e_synthetic-crops/epoch_6.pth
_base_ = [
    './_base_/instrument_resnet18.py', '../../../../configs/_base_/datasets/synthetic_correspondence.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['orl_plugin', 'projects.orl_evidence'], allow_failed_imports=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs: tools/dist_test.sh uses gloo ranks
