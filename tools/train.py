# Copyright (c) orl-plugin contributors. OpenMMLab-style training entry point.
"""Train with an mmengine Runner: ``python tools/train.py CONFIG [options]``.

The plugin's components are loaded through the config's ``custom_imports``
(``orl_plugin``), like any OpenMMLab project (the configs must say so: ``mim train
mmpretrain`` and mmdet's own tools read them too). This script uses only the plugin's
command-line error policy (``orl_plugin.utils.error_policy``: a known error is one line, exit status 2,
``--debug`` for the traceback).
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from orl_plugin.utils.error_policy import InputError, run_cli


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or (no value, or "auto") from the '
        'latest checkpoint in the work directory')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate linearly with the total batch (batch_size x ranks) against the '
        "config's auto_scale_lr.base_batch_size, as mmpretrain's train.py does")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs such as '
        '"train_dataloader.batch_size=8 model.backbone.depth=18"; lists as '
        'key="[a,b]" or key=a,b; quote whole values that contain spaces')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config (command line wins)."""
    cfg.launcher = args.launcher

    # work_dir priority: --work-dir > config's work_dir > work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise InputError('--amp is only supported with OptimWrapper or AmpOptimWrapper, '
                             f'but the config uses {optim_wrapper!r}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    # 'auto': the runner finds the latest checkpoint in work_dir.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # The Runner scales the optimizer's lr by world_size x batch_size / base_batch_size when enabled.
    if args.auto_scale_lr:
        if not isinstance(cfg.get('auto_scale_lr'), dict) or 'base_batch_size' not in cfg.auto_scale_lr:
            raise InputError(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size, the total '
                             'batch its learning rate is meant for')
        cfg.auto_scale_lr.enable = True
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    run_cli(main)
