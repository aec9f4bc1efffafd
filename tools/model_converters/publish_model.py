"""Prepare a checkpoint for release: drop the training state and add the sha256 suffix.

As OpenMMLab's ``publish_model.py``: ``optimizer``, ``param_schedulers``, ``message_hub`` (and the
mmcv-1.x ``hook_msgs``) are removed, ``meta`` is kept (with ``orl_plugin_version`` added), the
file is written atomically and renamed to ``OUT_STEM-XXXXXXXX.pth`` where ``XXXXXXXX`` is the first
8 hex digits of its sha256 (``--date`` adds ``_YYYYMMDD`` before it, as mmpretrain does).
``--backbone-only`` keeps only ``backbone.*`` tensors (what mmdet needs).

It then prints the model's entry for its ``configs/*/metafile.yml`` (what ``mim search
orl-plugin`` lists), with ``Weights`` (``--url-prefix`` + the published file name) and ``Results``
(``--task``, ``--dataset``, ``--metric NAME=VALUE``) filled in: paste it over the entry of the
same ``Name``. The model is the config the checkpoint was trained with (its ``experiment_name``
without the time stamp; ``--config`` to name another).

Example::

    python tools/model_converters/publish_model.py work_dirs/orl/epoch_800.pth orl_r50_coco_800e.pth \
        --url-prefix https://example.org/orl --task "Object Detection" --dataset COCO \
        --metric "box AP=40.3" --metric "mask AP=36.0"
"""
from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import List, Optional, Tuple

import torch
import yaml

import orl_plugin
from orl_plugin.utils.checkpoint import CheckpointFormatError, get_state_dict, load_checkpoint_file
from orl_plugin.utils.error_policy import InputError, run_cli
from orl_plugin.utils.mim_files import files_root
from orl_plugin.utils.stack_fixes import portable_checkpoint

TRAINING_STATE_KEYS = ('optimizer', 'param_schedulers', 'message_hub', 'hook_msgs')


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def publish(in_file: str, out_file: str, backbone_only: bool = False, date: Optional[str] = None) -> str:
    """Write the release checkpoint; return its final path (``<stem>[_date]-<sha8>.pth``)."""
    return write_release(release_checkpoint(in_file, out_file, backbone_only), out_file, date)


def release_checkpoint(in_file: str, out_file: str, backbone_only: bool = False) -> dict:
    """The checkpoint without its training state, as plain data."""
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
    return portable_checkpoint(ckpt, out_file)


def write_release(ckpt: dict, out_file: str, date: Optional[str] = None) -> str:
    """Save atomically as ``<stem>[_date]-<sha8>.pth``; return that path."""
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


def model_name(meta: dict) -> Optional[str]:
    """The config name a runner's checkpoint was trained with (``experiment_name`` is
    ``<config name>_<YYYYMMDD_HHMMSS>``)."""
    match = re.fullmatch(r'(.+)_\d{8}_\d{6}', str(meta.get('experiment_name', '')))
    return match.group(1) if match else None


def parse_metrics(items: List[str]) -> OrderedDict:
    """``NAME=VALUE`` words as an ordered ``{name: float}``."""
    metrics: OrderedDict = OrderedDict()
    for item in items:
        name, sep, value = item.rpartition('=')
        try:
            metrics[name.strip()] = float(value)
        except ValueError:
            sep = ''
        if not sep or not name.strip():
            raise InputError(f'--metric {item!r}: expected NAME=NUMBER, e.g. "box AP=40.3"')
    return metrics


def metafile_entry(name: str,
                   weights: str,
                   results: Optional[list] = None,
                   root: Optional[str] = None) -> Tuple[str, dict]:
    """The metafile entry of model ``name`` with ``Weights`` (and ``Results``) set.

    Returns:
        ``(metafile path, entry)``.

    Raises:
        InputError: no metafile under ``root/configs`` lists the model.
    """
    root = root or files_root()
    for path in sorted(glob.glob(osp.join(root, 'configs', '**', 'metafile.yml'), recursive=True)):
        with open(path, encoding='utf-8') as f:
            models = (yaml.safe_load(f) or {}).get('Models') or []
        for model in models:
            if model.get('Name') == name:
                entry = OrderedDict(model)
                entry['Weights'] = weights
                if results:
                    entry['Results'] = results
                return path, dict(entry)
    raise InputError(f'no configs/*/metafile.yml under {root} lists a model named {name!r}; '
                     'name it with --config')


def entry_yaml(entry: dict) -> str:
    """``entry`` as one item of a metafile's ``Models:`` list (indented to paste under it)."""
    text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=100)
    return ''.join('  ' + line if line.strip() else line for line in text.splitlines(True))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Process a checkpoint to be published')
    parser.add_argument('in_file', help='input checkpoint')
    parser.add_argument('out_file', help='output name; the sha256 suffix is added to it')
    parser.add_argument('--backbone-only', action='store_true', help="keep only the 'backbone.*' tensors")
    parser.add_argument('--date', action='store_true', help='add _YYYYMMDD (today) before the hash, as mmpretrain does')
    parser.add_argument(
        '--config',
        default=None,
        help="the model's Name in the metafiles (default: the config the "
        'checkpoint was trained with)')
    parser.add_argument(
        '--url-prefix', default=None, help='where the file will be downloadable; Weights is PREFIX/FILE_NAME')
    parser.add_argument('--task', default=None, help='Results: the task, e.g. "Object Detection"')
    parser.add_argument('--dataset', default=None, help='Results: the data set, e.g. COCO')
    parser.add_argument(
        '--metric',
        action='append',
        default=[],
        metavar='NAME=VALUE',
        help='Results: a metric, e.g. "box AP=40.3" (repeat for more)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    metrics = parse_metrics(args.metric)
    if metrics and not (args.task and args.dataset):
        raise InputError('--metric needs --task and --dataset (a metafile result names both)')
    date = datetime.datetime.now().strftime('%Y%m%d') if args.date else None
    ckpt = release_checkpoint(args.in_file, args.out_file, args.backbone_only)
    name = args.config or model_name(ckpt['meta'])
    results = [dict(Task=args.task, Dataset=args.dataset, Metrics=dict(metrics))] if metrics \
        else None
    # the metafile entry is looked up first: a wrong --config writes nothing
    path, entry = metafile_entry(osp.splitext(osp.basename(name))[0], '', results) if name \
        else (None, None)
    final = write_release(ckpt, args.out_file, date)
    print(f'published: {final}')
    if entry is None:
        print('no metafile entry: the checkpoint does not say which config trained it; '
              'name it with --config')
        return 0
    entry['Weights'] = f'{args.url_prefix.rstrip("/")}/{osp.basename(final)}' \
        if args.url_prefix else osp.basename(final)
    print(f'metafile entry (paste it over the entry named {entry["Name"]} in {path}):')
    print(entry_yaml(entry), end='')
    return 0


if __name__ == '__main__':
    run_cli(main)
