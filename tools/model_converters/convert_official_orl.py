"""Import an official ORL / BYOL release checkpoint (OpenSelfSup layout) into this project.

Accepted inputs: the official training checkpoints (backbone as ``backbone.*`` and/or
``online_net.0.*``, projector ``neck.*`` / ``online_net.1.*``, EMA target ``target_net.{0,1}.*``,
predictors ``head.*`` or ``global_head.*`` / ``local_intra_head.*`` / ``local_inter_head.*``) and
backbone-only files with bare ResNet keys; see ``orl_plugin/utils/checkpoint.py``.

Outputs:
- ``OUT``: this project's layout (``backbone.*``, ``neck.*``, ``target_net.module.{0,1}.*`` as
  ``CosineEMA`` keeps it, predictors under their head names).
- ``--backbone-out FILE``: backbone only, ``backbone.*`` keys, which mmdet loads with
  ``init_cfg=dict(type='Pretrained', checkpoint=FILE, prefix='backbone.')`` as the transfer
  configs do (``--bare-keys`` writes keys without the prefix, for an ``init_cfg`` with no prefix).
The backbone is checked by a strict load into mmdet's ResNet of the inferred depth.

Example::

    python tools/model_converters/convert_official_orl.py orl_r50_800ep.pth orl_converted.pth \
        --backbone-out orl_r50_backbone.pth
"""
from __future__ import annotations

import argparse
import os.path as osp
from collections import OrderedDict
from typing import Optional

from orl_plugin.utils.checkpoint import (atomic_torch_save, convert_state_dict, extract_backbone, get_state_dict,
                                         key_prefixes, load_checkpoint_file, verify_resnet)
from orl_plugin.utils.error_policy import InputError, run_cli


def convert(in_file: str,
            out_file: Optional[str] = None,
            backbone_out: Optional[str] = None,
            bare_keys: bool = False,
            verify: bool = True) -> dict:
    """Convert ``in_file``; write the project-layout and/or backbone-only checkpoint.

    Returns:
        A summary: backbone source prefix, ResNet depth (when verified), key counts, dropped keys.
    """
    if out_file is None and backbone_out is None:
        raise InputError('nothing to write: give out_file and/or --backbone-out')
    ckpt = load_checkpoint_file(in_file)
    sd = get_state_dict(ckpt, in_file)
    converted, dropped = convert_state_dict(sd, in_file)
    backbone = OrderedDict((k[len('backbone.'):], v) for k, v in converted.items() if k.startswith('backbone.'))
    depth = verify_resnet(backbone, in_file) if verify else None
    meta = dict(
        converted_from=osp.basename(in_file),
        converter='orl_plugin convert_official_orl',
        source_meta={k: v for k, v in (ckpt.get('meta') or {}).items() if isinstance(v, (str, int, float, bool))})
    if out_file is not None:
        atomic_torch_save(dict(meta=meta, state_dict=converted), out_file)
    if backbone_out is not None:
        keys = backbone if bare_keys else OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
        atomic_torch_save(dict(meta=dict(meta, backbone_only=True), state_dict=keys), backbone_out)
    prefix, _ = extract_backbone(sd, in_file)
    return dict(
        backbone_prefix=prefix or '<bare>',
        depth=depth,
        num_converted=len(converted),
        num_backbone=len(backbone),
        dropped=dropped,
        groups=sorted({k.split('.')[0] for k in converted}))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Import an official ORL/BYOL (OpenSelfSup) checkpoint into this project.')
    parser.add_argument('in_file', help='official checkpoint (.pth)')
    parser.add_argument(
        'out_file', nargs='?', default=None, help='output in this project\'s layout (backbone, neck, target, heads)')
    parser.add_argument(
        '--backbone-out', default=None, help='also write a backbone-only checkpoint for mmdet (backbone.* keys)')
    parser.add_argument('--bare-keys', action='store_true', help='backbone-only output without the "backbone." prefix')
    parser.add_argument('--no-verify', action='store_true', help='skip the strict load into mmdet ResNet')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = convert(args.in_file, args.out_file, args.backbone_out, args.bare_keys, verify=not args.no_verify)
    depth = f'ResNet-{summary["depth"]}' if summary['depth'] else 'backbone (not verified)'
    print(f'{depth} from "{summary["backbone_prefix"]}": {summary["num_backbone"]} backbone '
          f'tensors, {summary["num_converted"]} in total ({", ".join(summary["groups"])})')
    if summary['dropped']:
        print(f'not converted ({len(summary["dropped"])}): {key_prefixes(summary["dropped"])}')
    for name, path in (('project layout', args.out_file), ('backbone only', args.backbone_out)):
        if path:
            print(f'{name}: {path}')
    return 0


if __name__ == '__main__':
    run_cli(main)
