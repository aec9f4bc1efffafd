# Copyright (c) orl-plugin contributors. OpenMMLab-style test entry point.
"""Run a config's test loop: ``python tools/test.py CONFIG [CHECKPOINT] [options]``.

Stage-2 mining steps are test loops: KNN retrieval and correspondence need the stage-1
checkpoint, selective search needs none. The plugin's components are loaded through the
config's ``custom_imports``; this script uses only its command-line error policy
(``orl_plugin.utils.error_policy``: a known error is one line, exit status 2, ``--debug`` for the traceback).
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from orl_plugin.utils.error_policy import run_cli


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (or mine with) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='checkpoint file (optional: configs that need no weights, such as '
        'selective search, run without one or with "none", as `mim test --checkpoint none`)')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs such as '
        '"test_dataloader.batch_size=8"; lists as key="[a,b]" or key=a,b')
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

    if args.checkpoint is not None and args.checkpoint.lower() != 'none':
        cfg.load_from = args.checkpoint

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.test()


if __name__ == '__main__':
    run_cli(main)
