"""Fixes for known breakages of the verified stack (torch 2.14, mmengine 0.10.7, mmcv 2.1, numpy 2).

Applied when ``orl_plugin`` is imported (first of all), so every user of the plugin gets them: our tools,
``mim train``, and mmpretrain's or mmdet's own ``tools/train.py`` through ``custom_imports``. Each fix is
idempotent and has its own module; docs/en/advanced_guides/stack_fixes.md says what each fixes and why.
"""
from mmengine.runner import FlexibleRunner, Runner

from .checkpoints import numpy_safe_globals, patch_checkpoints, portable_checkpoint, to_plain
from .cpu_distributed import patch_cpu_distributed
from .dataloader import NoBatchError, check_makes_a_batch, patch_build_dataloader
from .hue import patch_adjust_hue

__all__ = [
    'NoBatchError', 'apply_patches', 'check_makes_a_batch', 'numpy_safe_globals', 'portable_checkpoint', 'to_plain'
]


def apply_patches() -> None:
    """Apply every fix (idempotent; called when ``orl_plugin`` is imported)."""
    patch_checkpoints()
    for runner_cls in (Runner, FlexibleRunner):
        patch_build_dataloader(runner_cls)
    patch_cpu_distributed()
    patch_adjust_hue()


apply_patches()
