"""Refuse a stage-1 checkpoint that does not hold the weights a mining step reads.

mmengine's ``load_checkpoint`` (what ``load_from`` runs) only warns about missing keys, so a
checkpoint of another layout (an official OpenSelfSup file, a backbone-only export, a model of
another depth) would mine with random weights and produce plausible-looking garbage. The mining
loops check the file against the model parts their feature component reads, before any work.
"""
from __future__ import annotations

import os.path as osp
import re
from typing import Dict, Sequence

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from orl_plugin.models.feature_utils import checkpoint_keys
from orl_plugin.utils.checkpoint import CheckpointFormatError, get_state_dict, key_prefixes, load_checkpoint_file

__all__ = ['check_checkpoint_keys']


def _state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The checkpoint's tensors, keys as mmengine's loader sees them (``module.`` stripped)."""
    if osp.isfile(path):
        ckpt = load_checkpoint_file(path)
    else:  # a URL or other backend: mmengine's own loader
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    sd = get_state_dict(ckpt, path) if isinstance(ckpt, dict) else {}
    return {re.sub(r'^module\.', '', k): v for k, v in sd.items()}


def check_checkpoint_keys(model: torch.nn.Module, modules: Sequence[str], path: str, step: str = 'mining') -> None:
    """Raise ``CheckpointFormatError`` unless checkpoint ``path`` holds every weight of
    ``modules`` of ``model`` with the model's shapes; the message names the file, the keys
    expected and missing (or mis-shaped), and what the file holds instead."""
    expected = checkpoint_keys(model, modules)
    if not expected:
        return
    sd = _state_dict(path)
    missing = [k for k, _ in expected if k not in sd]
    wrong = [(k, shape, tuple(sd[k].shape)) for k, shape in expected if k in sd and tuple(sd[k].shape) != shape]
    if not missing and not wrong:
        return
    shown = osp.abspath(path) if osp.exists(path) else path
    parts = ', '.join(f'{m}.*' for m in modules)
    what = []
    if missing:
        what.append(f'{len(missing)} of the {len(expected)} keys it reads are missing '
                    f'(e.g. {", ".join(missing[:4])})')
    if wrong:
        k, want, got = wrong[0]
        what.append(f'{len(wrong)} have other shapes (e.g. {k}: {list(got)} in the file, '
                    f'{list(want)} in the model)')
    raise CheckpointFormatError(
        f'{shown}: does not fit the {step} model ({type(model).__name__}, '
        f'{type(model.backbone).__name__} backbone): expected the keys {parts} of the config\'s '
        f'model ({expected[0][0]}, ...), but {" and ".join(what)}; the file holds keys under '
        f'{", ".join(key_prefixes(sd)) or "nothing"}; use a checkpoint of the config\'s model '
        '(e.g. the stage-1 epoch_N.pth), or set model= to the checkpoint\'s model; convert an '
        'official ORL/OpenSelfSup file with tools/model_converters/convert_official_orl.py')
