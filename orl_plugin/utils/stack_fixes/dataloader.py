"""Data loader configs torch and mmengine accept, and a clear stop when a data set makes no batch.

Three fixes of ``Runner.build_dataloader`` (and ``FlexibleRunner``'s): ``collate_fn`` configs inherited
with ``_scope_`` from ``mmpretrain::``/``mmdet::`` bases, ``persistent_workers`` without workers, and a
``drop_last`` loader with fewer images per rank than one batch (:class:`NoBatchError`).
"""
import functools
import logging
from typing import Any, Callable

from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.registry import FUNCTIONS
from torch.utils.data import DataLoader

from ._marker import is_patched, mark_patched

__all__ = ['NoBatchError', 'check_makes_a_batch', 'patch_build_dataloader']


def _fix_dataloader_cfg(dataloader: Any) -> Any:
    """Return a dataloader config torch/mmengine accept (configs are never mutated)."""
    if not isinstance(dataloader, dict):
        return dataloader  # an already built DataLoader
    collate_cfg = dataloader.get('collate_fn')
    scoped_collate = isinstance(collate_cfg, dict) and '_scope_' in collate_cfg
    idle_persistent = bool(dataloader.get('persistent_workers')) and \
        not dataloader.get('num_workers', 0)
    if not (scoped_collate or idle_persistent):
        return dataloader

    fixed = dict(dataloader)
    if scoped_collate:
        collate_cfg = dict(collate_cfg)
        scope = collate_cfg.pop('_scope_')
        collate_type = collate_cfg.get('type')
        if isinstance(collate_type, str):
            # The scope's own FUNCTIONS registry if it has one (mmpretrain and mmdet have
            # none), else mmengine's: the fallback mmengine's builders use for `_scope_`.
            collate_fn = FUNCTIONS.get(f'{scope}.{collate_type}') if scope else None
            if collate_fn is None:
                collate_fn = FUNCTIONS.get(collate_type)
            if collate_fn is None:
                raise KeyError(f'collate_fn type {collate_type!r} is not registered in '
                               f'the FUNCTIONS registry of scope {scope!r}')
            collate_cfg['type'] = collate_fn
        fixed['collate_fn'] = collate_cfg
    if idle_persistent:
        # torch refuses persistent workers when there are none; there is nothing to keep.
        fixed.pop('persistent_workers')
        print_log(
            'num_workers=0: dropping persistent_workers=True from the dataloader '
            'config (torch refuses the combination)',
            logger='current',
            level=logging.DEBUG)
    return fixed


def patch_build_dataloader(runner_cls: type) -> None:
    orig: Callable = runner_cls.__dict__['build_dataloader'].__func__
    if is_patched(orig):
        return

    @functools.wraps(orig)
    def build_dataloader(dataloader: Any, *args: Any, **kwargs: Any):
        loader = orig(_fix_dataloader_cfg(dataloader), *args, **kwargs)
        check_makes_a_batch(loader)
        return loader

    mark_patched(build_dataloader)
    runner_cls.build_dataloader = staticmethod(build_dataloader)


class NoBatchError(ValueError):
    """A data loader that drops its last partial batch gets fewer images per rank than one batch."""


def check_makes_a_batch(loader: Any) -> None:
    """Raise :class:`NoBatchError` when ``loader`` (``drop_last=True``) makes no batch on this rank."""
    if not isinstance(loader, DataLoader) or not loader.drop_last or not loader.batch_size or \
            isinstance(loader.sampler, InfiniteSampler):  # an endless sampler always fills its batches
        return
    try:
        if len(loader) > 0:
            return
        num_images = len(loader.dataset)
    except TypeError:  # an iterable data set has no length
        return
    _, world_size = get_dist_info()
    batch = loader.batch_size
    # DefaultSampler(round_up=True) gives every rank ceil(n / world_size) indices; without it the
    # last rank gets the fewest.
    need = world_size * (batch - 1) + 1 if getattr(loader.sampler, 'round_up', False) else world_size * batch
    training = not getattr(loader.dataset, 'test_mode', False)
    key = 'train_dataloader.batch_size' if training else 'the data loader\'s batch_size'
    ranks = f'{world_size} rank{"s" if world_size > 1 else ""}'
    raise NoBatchError(f'{type(loader.dataset).__name__}: {num_images} {"training " if training else ""}images '
                       f'make no batch of {batch} per rank ({key}={batch} on {ranks}, drop_last=True): it needs at '
                       f'least {need} images; add images or lower {key}')
