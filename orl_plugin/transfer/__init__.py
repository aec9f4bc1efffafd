"""The pieces the transfer (mmdet fine-tuning) configs need, registered into mmdet's registries.

Not imported by ``orl_plugin`` itself, so pre-training never imports mmdet; the transfer configs
load it with ``custom_imports = dict(imports=['orl_plugin', 'orl_plugin.transfer'])``.
"""
from .precise_bn_hook import DetPreciseBNHook  # noqa: F401
from .voc_dataset import KeepDifficultVOCDataset  # noqa: F401
