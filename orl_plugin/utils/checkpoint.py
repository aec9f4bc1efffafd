"""Checkpoint layouts: load safely, find the backbone, map official ORL/BYOL keys, save atomically.

Shared by ``tools/model_converters/*`` (official import, detectron2 export, publishing). The official
code (OpenSelfSup) keeps the online network as ``online_net = Sequential(backbone, neck)`` and also
registers ``backbone``/``neck`` as aliases of its two parts, so a checkpoint holds the backbone twice
(``backbone.*`` and ``online_net.0.*``), the projector as ``neck.*`` / ``online_net.1.*``, the EMA
target as ``target_net.{0,1}.*`` and the predictors as ``head.*`` (BYOL) or ``global_head.*`` /
``local_intra_head.*`` / ``local_inter_head.*`` (ORL). Backbone-only files made by OpenSelfSup's
``extract_backbone_weights.py`` hold bare ResNet keys (``conv1.weight``, ``layer1.0.conv1.weight``).
"""
from __future__ import annotations

import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from .atomic import atomic_open
from .stack_fixes import numpy_safe_globals, portable_checkpoint

__all__ = [
    'CheckpointFormatError', 'DroppedObject', 'PREFIX_MAP', 'BACKBONE_PREFIXES', 'RESNET_ARCHS', 'load_checkpoint_file',
    'get_state_dict', 'key_prefixes', 'is_bare_resnet', 'extract_backbone', 'resnet_depth', 'verify_resnet',
    'convert_state_dict', 'atomic_torch_save'
]

# (official prefix, project prefix), checked in order; several official prefixes may name the same
# tensors (``backbone.`` is an alias of ``online_net.0.``), and they must then agree.
PREFIX_MAP: Tuple[Tuple[str, str], ...] = (
    ('backbone.', 'backbone.'),
    ('online_net.0.', 'backbone.'),
    ('neck.', 'neck.'),
    ('online_net.1.', 'neck.'),
    ('target_net.0.', 'target_net.module.0.'),
    ('target_net.1.', 'target_net.module.1.'),
    ('head.', 'head.'),  # BYOL's predictor
    # ORL's three predictors, named as orl_plugin.models.ORL names them
    ('global_head.', 'head.'),
    ('local_intra_head.', 'intra_head.'),
    ('local_inter_head.', 'inter_head.'),
)

BACKBONE_PREFIXES: Tuple[str, ...] = ('backbone.', 'online_net.0.')

# ResNet depth -> (block type, blocks per stage), as in torchvision / mmdet / mmpretrain.
RESNET_ARCHS: Dict[int, Tuple[str, Tuple[int, ...]]] = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
}


class CheckpointFormatError(ValueError):
    """A checkpoint does not have the layout a converter expects."""


class DroppedObject:
    """Inert stand-in for runner state that a weights-only load must not rebuild.

    mmengine's ``message_hub`` pickles ``HistoryBuffer`` objects whose statistics methods are
    written as ``builtins.getattr(obj, name)``; allow-listing the real ``getattr`` would let any
    file call any attribute. Here both names resolve to this class, which calls nothing and
    discards its state, so the weights load and the runner state reads as placeholders.
    """

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def __repr__(self) -> str:
        return '<dropped runner state>'


def _inert_getattr(obj, name, *default) -> DroppedObject:
    return DroppedObject()


def _runner_state_globals() -> list:
    """Globals of mmengine's runner state (``message_hub``), mapped to inert stand-ins."""
    return [(DroppedObject, 'mmengine.logging.history_buffer.HistoryBuffer'), (_inert_getattr, 'builtins.getattr')]


def load_checkpoint_file(path: str) -> dict:
    """``torch.load(weights_only=True)``, widened only as far as the file needs.

    A plain weights-only load is tried first. If it fails on numpy globals (old ``meta`` fields,
    logged scalars), it is retried with numpy's array/scalar/dtype globals allowed and mmengine's
    runner-state globals (``HistoryBuffer`` and the ``getattr`` calls in its pickle) mapped to
    :class:`DroppedObject`: the weights load exactly, ``message_hub`` reads as placeholders.

    Raises:
        FileNotFoundError: no such file.
        CheckpointFormatError: the file is not a dict, or needs other globals.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as first:
        if 'numpy' not in str(first) and 'mmengine' not in str(first):
            raise CheckpointFormatError(f'{path}: cannot be loaded with weights_only=True: {first}') from first
        try:
            # Only what is not allowed yet: leaving the context removes its globals, which
            # would otherwise take away the numpy allow-list of orl_plugin.utils.stack_fixes.
            allowed = torch.serialization.get_safe_globals()
            extra = [g for g in numpy_safe_globals() + _runner_state_globals() if g not in allowed]
            with torch.serialization.safe_globals(extra):
                obj = torch.load(path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as second:
            raise CheckpointFormatError(f'{path}: cannot be loaded with weights_only=True even with numpy globals and '
                                        f'inert mmengine runner state allowed: {second}') from second
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f'{path}: expected a dict, got {type(obj).__name__}')
    return obj


def get_state_dict(ckpt: dict, path: str = '<checkpoint>') -> Dict[str, torch.Tensor]:
    """The tensor dict of a checkpoint: its ``state_dict`` (or ``model``) entry, or the dict itself."""
    for key in ('state_dict', 'model'):
        if key in ckpt and isinstance(ckpt[key], dict):
            sd = ckpt[key]
            break
    else:
        sd = ckpt
    tensors = OrderedDict((k, v) for k, v in sd.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise CheckpointFormatError(f'{path}: no tensors found (looked in "state_dict", "model" and the top level; '
                                    f'top-level keys: {sorted(ckpt)[:10]})')
    return tensors


def key_prefixes(keys, depth: int = 2, limit: int = 12) -> List[str]:
    """Distinct leading ``depth`` dotted components of ``keys`` (for error messages)."""
    seen: 'OrderedDict[str, None]' = OrderedDict()
    for k in keys:
        seen['.'.join(k.split('.')[:depth]) + ('.' if k.count('.') >= depth else '')] = None
    out = list(seen)
    return out[:limit] + ([f'... ({len(out) - limit} more)'] if len(out) > limit else [])


def is_bare_resnet(sd: Dict[str, torch.Tensor]) -> bool:
    """True for a ResNet state_dict with no prefix (``conv1.weight`` and ``layer1.*`` keys)."""
    return 'conv1.weight' in sd and any(k.startswith('layer1.') for k in sd)


def extract_backbone(sd: Dict[str, torch.Tensor],
                     path: str = '<checkpoint>') -> Tuple[str, 'OrderedDict[str, torch.Tensor]']:
    """Backbone tensors without prefix, from ``backbone.*``, ``online_net.0.*`` or bare ResNet keys.

    Returns:
        ``(found_prefix, tensors)``; ``found_prefix`` is ``''`` for a bare ResNet state_dict.
    """
    found: Dict[str, 'OrderedDict[str, torch.Tensor]'] = {}
    for prefix in BACKBONE_PREFIXES:
        part = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
        if part:
            found[prefix] = part
    if not found:
        if is_bare_resnet(sd):
            return '', OrderedDict(sd)
        raise CheckpointFormatError(
            f"{path}: no backbone weights: expected keys starting with 'backbone.' or "
            f"'online_net.0.' (or a bare ResNet state_dict with 'conv1.weight' and 'layer1.*'); "
            f'found prefixes: {key_prefixes(sd)}')
    if len(found) == 2:
        _check_same(found['backbone.'], found['online_net.0.'], 'backbone.', 'online_net.0.', path)
    prefix = next(iter(found))
    return prefix, found[prefix]


def _check_same(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], pa: str, pb: str, path: str) -> None:
    """Two aliases of one module must hold the same tensors."""
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b))[:5]
        raise CheckpointFormatError(f"{path}: '{pa}*' and '{pb}*' should be the same module but their keys differ, "
                                    f'e.g. {only}')
    for k in a:
        if a[k].shape != b[k].shape or not torch.equal(a[k], b[k]):
            raise CheckpointFormatError(f"{path}: '{pa}{k}' and '{pb}{k}' should be the same tensor but differ")


def resnet_depth(backbone: Dict[str, torch.Tensor], path: str = '<checkpoint>') -> int:
    """Infer the ResNet depth from the block counts and block type of a bare backbone state_dict."""
    counts = []
    for stage in range(1, 5):
        blocks = {int(m.group(1)) for k in backbone for m in [re.match(rf'layer{stage}\.(\d+)\.', k)] if m}
        counts.append(max(blocks) + 1 if blocks else 0)
    kind = 'bottleneck' if 'layer1.0.conv3.weight' in backbone else 'basic'
    for depth, (block, stages) in RESNET_ARCHS.items():
        if block == kind and tuple(counts) == stages:
            return depth
    raise CheckpointFormatError(f'{path}: backbone is not a standard ResNet: {kind} blocks per stage {counts}')


def verify_resnet(backbone: Dict[str, torch.Tensor], path: str = '<checkpoint>') -> int:
    """Load the backbone strictly into mmdet's ResNet of the inferred depth; return the depth.

    ``num_batches_tracked`` may be absent (checkpoints from old PyTorch); every other key must match
    in name and shape, so the weights are known to reach mmdet's detectors unchanged.
    """
    from mmdet.models.backbones import ResNet
    depth = resnet_depth(backbone, path)
    model = ResNet(depth=depth)
    expected = model.state_dict()
    for k, v in backbone.items():
        if k in expected and v.shape != expected[k].shape:
            raise CheckpointFormatError(f'{path}: backbone does not match ResNet-{depth}: {k} has shape '
                                        f'{tuple(v.shape)}, expected {tuple(expected[k].shape)}')
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise CheckpointFormatError(f'{path}: backbone does not match ResNet-{depth}: missing {missing[:5]}, '
                                    f'unexpected {unexpected[:5]}')
    return depth


def convert_state_dict(sd: Dict[str, torch.Tensor],
                       path: str = '<checkpoint>') -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Map an official state_dict to this project's key layout.

    Returns:
        ``(converted, dropped)``: the converted tensors and the official keys that map to nothing.
    """
    prefix, backbone = extract_backbone(sd, path)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    if prefix == '':  # a bare backbone: nothing else to map
        return out, []
    used = {k for k in sd if k.startswith(BACKBONE_PREFIXES)}
    groups: Dict[str, Dict[str, Dict[str, torch.Tensor]]] = {}
    for src, dst in PREFIX_MAP:
        if dst == 'backbone.':
            continue
        part = {k[len(src):]: v for k, v in sd.items() if k.startswith(src)}
        if part:
            groups.setdefault(dst, {})[src] = part
            used.update(src + k for k in part)
    for dst, by_src in groups.items():
        srcs = list(by_src)
        for other in srcs[1:]:
            _check_same(by_src[srcs[0]], by_src[other], srcs[0], other, path)
        out.update((dst + k, v) for k, v in by_src[srcs[0]].items())
    if any(k.startswith('target_net.module.') for k in out):
        # CosineEMA's update counter; 0 = a fresh average, as when a model is built
        out['target_net.steps'] = torch.tensor(0)
    dropped = [k for k in sd if k not in used]
    return out, dropped


def atomic_torch_save(obj: dict, path: str) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename over ``path``.

    The object is saved as plain data (:func:`orl_plugin.utils.stack_fixes.portable_checkpoint`), so the
    file loads with ``torch.load(weights_only=True)`` anywhere, whatever the source held.
    """
    obj = portable_checkpoint(obj, path)
    with atomic_open(path, 'wb', tmp_prefix='.tmp_') as f:
        torch.save(obj, f)
