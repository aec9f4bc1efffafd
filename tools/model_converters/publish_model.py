"""Prepare a checkpoint for release: drop the training state and add the sha256 suffix.

As OpenMMLab's ``publish_model.py``: ``optimizer``, ``param_schedulers``, ``message_hub`` (and the
mmcv-1.x ``hook_msgs``) are removed, ``meta`` is kept (with ``orl_plugin_version`` added), the
file is written atomically and renamed to ``OUT_STEM-XXXXXXXX.pth`` where ``XXXXXXXX`` is the first
8 hex digits of its sha256 (``--date`` adds ``_YYYYMMDD`` before it, as mmpretrain does).
``--backbone-only`` keeps only ``backbone.*`` tensors (what mmdet needs).

Example::

    python tools/model_converters/publish_model.py work_dirs/orl/epoch_800.pth orl_r50_coco_800e.pth
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Optional

import torch

import orl_plugin
from orl_plugin.checkpoint_convert import (CheckpointFormatError, get_state_dict,
                                           load_checkpoint_file)
from orl_plugin.cli import run_cli
from orl_plugin.compat import portable_checkpoint

TRAINING_STATE_KEYS = ('optimizer', 'param_schedulers', 'message_hub', 'hook_msgs')


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def publish(in_file: str, out_file: str, backbone_only: bool = False,
            date: Optional[str] = None) -> str:
    """Write the release checkpoint; return its final path (``<stem>[_date]-<sha8>.pth``)."""
    ckpt = load_checkpoint_file(in_file)
    for key in TRAINING_STATE_KEYS:
        ckpt.pop(key, None)
    if 'state_dict' not in ckpt:  # a bare state_dict (e.g. converted from elsewhere)
        ckpt = dict(state_dict=get_state_dict(ckpt, in_file))
    if backbone_only:
        sd = get_state_dict(ckpt, in_file)
        backbone = OrderedDict((k, v) for k, v in sd.items() if k.startswith('backbone.'))
        if not backbone:
            raise CheckpointFormatError(f"{in_file}: --backbone-only: no keys start with "
                                        f"'backbone.'")
        ckpt['state_dict'] = backbone
    meta = dict(ckpt.get('meta') or {})
    meta.setdefault('orl_plugin_version', orl_plugin.__version__)
    ckpt['meta'] = meta
    # numpy values in an older checkpoint's meta become plain Python: the release loads anywhere
    ckpt = portable_checkpoint(ckpt, out_file)

    stem = out_file[:-4] if out_file.endswith('.pth') else out_file
    if date:
        stem = f'{stem}_{date}'
    out_dir = osp.dirname(osp.abspath(out_file))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'output folder does not exist: {out_dir}')
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix='.tmp_', suffix='.pth')
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        final = f'{stem}-{sha256_of(tmp)[:8]}.pth'
        os.replace(tmp, final)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return final


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Process a checkpoint to be published')
    parser.add_argument('in_file', help='input checkpoint')
    parser.add_argument('out_file', help='output name; the sha256 suffix is added to it')
    parser.add_argument('--backbone-only', action='store_true',
                        help="keep only the 'backbone.*' tensors")
    parser.add_argument('--date', action='store_true',
                        help='add _YYYYMMDD (today) before the hash, as mmpretrain does')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    date = datetime.datetime.now().strftime('%Y%m%d') if args.date else None
    final = publish(args.in_file, args.out_file, args.backbone_only, date)
    print(f'published: {final}')
    return 0


if __name__ == '__main__':
    run_cli(main)
