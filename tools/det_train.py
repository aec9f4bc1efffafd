"""Fine-tune an mmdet detector from a self-supervised backbone (mmdet's ``tools/train.py``, thin).

mmdet's ``tools/train.py`` does not ship with the pip package, so this is the same flow on
mmengine's ``Runner`` with mmdet's scope, plus ``--pretrained`` to point every
``init_cfg=dict(type='Pretrained', ...)`` of the model (the backbone, and the C4 shared head that
holds ``layer4``) at one checkpoint: a stage-1/stage-3 checkpoint as training wrote it
(``backbone.*`` keys, read through the configs' ``prefix='backbone.'``) or a converted one.

Examples::

    # CPU, synthetic scenes, from the stage-3 CPU checkpoint
    python tools/det_train.py configs/benchmarks/mmdetection/synthetic/faster-rcnn_r18_fpn_1xb8-100i_synthetic.py \
        --pretrained work_dirs/orl_resnet18_1xb16-coslr-30e_synthetic/epoch_30.pth
    # 8 GPUs: see tools/benchmarks/mmdetection/train.sh
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from typing import Any, List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from orl_plugin.utils.error_policy import InputError, run_cli


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train an mmdet detector (transfer benchmark)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--pretrained',
        default=None,
        help='checkpoint for every Pretrained init_cfg of the model; "none" drops them '
        '(random-initialisation baseline)')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='scale the learning rate by the actual total batch size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or from the latest one in work_dir if no path is given')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs (e.g. '
        'model.backbone.init_cfg.checkpoint=CKPT train_dataloader.batch_size=4)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (older: --local_rank); torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def pretrained_init_cfgs(node: Any, path: str = 'model') -> List[tuple]:
    """Every ``init_cfg`` of type ``Pretrained`` under ``node``, as ``(dotted path, cfg)`` pairs."""
    found: List[tuple] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f'{path}.{key}'
            if key == 'init_cfg':
                cfgs = value if isinstance(value, list) else [value]
                found += [(sub, c) for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained']
            else:
                found += pretrained_init_cfgs(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += pretrained_init_cfgs(value, f'{path}[{i}]')
    return found


def set_pretrained(cfg: Config, checkpoint: str) -> List[str]:
    """Point every Pretrained ``init_cfg`` of ``cfg.model`` at ``checkpoint`` ("none": remove them).

    Returns:
        The dotted paths of the ``init_cfg`` entries changed.

    Raises:
        ValueError: the model has no Pretrained ``init_cfg`` to set.
    """
    found = pretrained_init_cfgs(cfg.model)
    if not found:
        raise InputError(f'{cfg.filename}: the model has no init_cfg of type "Pretrained" to point '
                         'at the checkpoint; set one, or use load_from / --cfg-options')
    if checkpoint.lower() == 'none':
        _drop_pretrained(cfg.model)
    else:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'--pretrained checkpoint not found: {checkpoint}')
        for _, init_cfg in found:
            init_cfg['checkpoint'] = checkpoint
    return [p for p, _ in found]


def _drop_pretrained(node: Any) -> None:
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            if key == 'init_cfg':
                if isinstance(value, list):
                    kept = [c for c in value if not (isinstance(c, dict) and c.get('type') == 'Pretrained')]
                    node[key] = kept or None
                elif isinstance(value, dict) and value.get('type') == 'Pretrained':
                    node[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with the command-line settings applied, as mmdet's train.py does."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.setdefault('default_scope', 'mmdet')
    if args.pretrained is not None:
        changed = set_pretrained(cfg, args.pretrained)
        print(f'pretrained={args.pretrained} -> {", ".join(changed)}', flush=True)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise InputError(f'{args.config}: --auto-scale-lr needs "auto_scale_lr" with '
                             '"base_batch_size" in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = build_cfg(args)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()
    return 0


if __name__ == '__main__':
    run_cli(main)
