"""Export a ResNet backbone to a detectron2 weights file (``.pkl``), the paper's transfer route.

The input may be this project's checkpoint (``backbone.*``), an official ORL/BYOL release
(``backbone.*`` / ``online_net.0.*``), a backbone-only file, or any key prefix chosen with
``--prefix`` (e.g. ``target_net.module.0.`` for the EMA target). Keys are renamed as detectron2's
``tools/convert-torchvision-to-d2.py`` does (``conv1``/``bn1`` -> ``stem.conv1``/``stem.conv1.norm``,
``layerN`` -> ``res{N+1}``, ``bnK`` -> ``convK.norm``, ``downsample.0/1`` -> ``shortcut``/
``shortcut.norm``), values become numpy arrays, and the file is
``{"model": ..., "__author__": ..., "matching_heuristics": True}``.

The weights are torchvision-style (stride in the 3x3 conv, RGB input normalised with the ImageNet
mean/std), so the detectron2 config needs::

    MODEL:
      WEIGHTS: "/path/to/out.pkl"
      PIXEL_MEAN: [123.675, 116.280, 103.530]
      PIXEL_STD: [58.395, 57.120, 57.375]
      RESNETS: {DEPTH: 50, STRIDE_IN_1X1: False}
    INPUT: {FORMAT: "RGB"}

Example::

    python tools/model_converters/export_detectron2.py work_dirs/orl/epoch_800.pth orl_r50.pkl
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import pickle
import tempfile
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from orl_plugin.utils.checkpoint import (CheckpointFormatError, extract_backbone, get_state_dict, key_prefixes,
                                         load_checkpoint_file, resnet_depth)
from orl_plugin.utils.error_policy import run_cli

# Keys of a ResNet state_dict that detectron2's backbone does not have.
_SKIP_SUFFIXES = ('num_batches_tracked', )
_SKIP_PREFIXES = ('fc.', )


def torchvision_to_d2_key(key: str) -> str:
    """Rename one torchvision/mmdet ResNet key to detectron2's naming."""
    if 'layer' not in key:
        key = 'stem.' + key
    for t in (1, 2, 3, 4):
        key = key.replace(f'layer{t}', f'res{t + 1}')
    for t in (1, 2, 3):
        key = key.replace(f'bn{t}', f'conv{t}.norm')
    key = key.replace('downsample.0', 'shortcut')
    key = key.replace('downsample.1', 'shortcut.norm')
    return key


def to_detectron2(backbone: Dict[str, torch.Tensor]) -> 'OrderedDict[str, np.ndarray]':
    """Detectron2 ``model`` dict (numpy arrays) from bare ResNet keys; ``fc`` and BN counters dropped."""
    out: 'OrderedDict[str, np.ndarray]' = OrderedDict()
    for key, value in backbone.items():
        if key.endswith(_SKIP_SUFFIXES) or key.startswith(_SKIP_PREFIXES):
            continue
        out[torchvision_to_d2_key(key)] = value.detach().cpu().float().numpy() \
            if value.is_floating_point() else value.detach().cpu().numpy()
    return out


def select_backbone(sd: Dict[str, torch.Tensor], prefix: Optional[str],
                    path: str) -> Tuple[str, 'OrderedDict[str, torch.Tensor]']:
    """Backbone tensors without prefix: the given ``prefix``, else found automatically."""
    if prefix is None:
        return extract_backbone(sd, path)
    part = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    if not part:
        raise CheckpointFormatError(
            f"{path}: no keys start with '{prefix}'; found prefixes: {key_prefixes(sd, depth=3)}")
    return prefix, part


def export(in_file: str, out_file: str, prefix: Optional[str] = None, author: str = 'orl_plugin') -> dict:
    """Write ``out_file`` (.pkl) from the backbone in ``in_file``; return a summary."""
    ckpt = load_checkpoint_file(in_file)
    sd = get_state_dict(ckpt, in_file)
    found, backbone = select_backbone(sd, prefix, in_file)
    depth = resnet_depth(backbone, in_file)
    model = to_detectron2(backbone)
    obj = {'model': model, '__author__': author, 'matching_heuristics': True}
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix='.tmp_', suffix='.pkl')
    try:
        with os.fdopen(fd, 'wb') as f:
            pickle.dump(obj, f)
        os.replace(tmp, out_file)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return dict(prefix=found or '<bare>', depth=depth, num_keys=len(model))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export a ResNet backbone to detectron2 (.pkl).')
    parser.add_argument('in_file', help='checkpoint (.pth)')
    parser.add_argument('out_file', help='detectron2 weights (.pkl)')
    parser.add_argument(
        '--prefix',
        default=None,
        help="backbone key prefix (default: 'backbone.', then 'online_net.0.', "
        "then bare ResNet keys); e.g. 'target_net.module.0.' for the EMA target")
    parser.add_argument('--author', default='orl_plugin', help='the "__author__" field')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = export(args.in_file, args.out_file, args.prefix, args.author)
    print(f'ResNet-{summary["depth"]} from "{summary["prefix"]}": {summary["num_keys"]} arrays '
          f'-> {args.out_file}')
    print(f'detectron2 config: MODEL.WEIGHTS={args.out_file} MODEL.RESNETS.DEPTH={summary["depth"]} '
          'MODEL.RESNETS.STRIDE_IN_1X1=False INPUT.FORMAT=RGB '
          'MODEL.PIXEL_MEAN=[123.675,116.280,103.530] MODEL.PIXEL_STD=[58.395,57.120,57.375]' +
          (' MODEL.RESNETS.RES2_OUT_CHANNELS=64' if summary['depth'] in (18, 34) else ''))
    return 0


if __name__ == '__main__':
    run_cli(main)
