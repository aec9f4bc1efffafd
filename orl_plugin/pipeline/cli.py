"""The ``tools/pipeline.py`` / ``orl-pipeline`` command line."""
import argparse
import dataclasses
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from .presets import FOLDER, FOLDER_PRESETS, FOLDER_RULE, PRESETS
from .runner import Pipeline, PipelineOptions
from .stages import STAGES, PipelineError, stage_names


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(
        prog='orl-pipeline',
        description='Run ORL stage 1 -> 2a/2b/2c -> 3 (-> detection fine-tune) through the ordinary entry '
        'points, skipping stages that are already done.',
        epilog=f'stages: {stage_names()}. Per-stage options: --cfg-options 2a:test_dataloader.batch_size=8; '
        "an item without STAGE: goes to every stage whose config has the key's parent. "
        f'Your own images: orl-pipeline {FOLDER} --data-root DIR [--gpus N] pre-trains on every image under DIR '
        '(recursive; jpg, jpeg, png, bmp, webp, tif; no annotations needed; unreadable files are skipped and '
        f'named) and ends with a table, summary.json and pictures of the mined boxes and pairs in the work dir. '
        f'{FOLDER_RULE} folder-gpu is the COCO recipe (ResNet-50, 224 px views, 8x64 batch, 800 epochs); '
        'folder-cpu a laptop try (ResNet-18, 96 px views, 30 + 30 epochs); both search boxes on copies of '
        'at most 1024 px and keep boxes >= 96 px. Shorten with --schedule stage1=N stage3=N.')
    p.add_argument(
        'pipeline',
        help=f'preset ({", ".join([*PRESETS, FOLDER, *FOLDER_PRESETS])}) or a directory holding ' +
        '/'.join(s.config_file for s in STAGES))
    p.add_argument('--work-dir', help='default: work_dirs/pipeline/<preset or directory name>')
    p.add_argument(
        '--from', dest='from_stage', metavar='STAGE', help='rerun STAGE and every stage downstream of it, even if done')
    p.add_argument('--to', dest='to_stage', metavar='STAGE', help='stop after STAGE')
    p.add_argument('--force', action='store_true', help='rerun every stage, done or not')
    p.add_argument('--finetune', action='store_true', help='also fine-tune a detector from the stage-3 backbone')
    p.add_argument(
        '--gpus',
        type=int,
        default=1,
        help='processes per stage; > 1 launches through tools/dist_train.sh / dist_test.sh '
        f'(with {FOLDER}: 0 chooses the CPU recipe)')
    p.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help="'pytorch': tools/dist_{train,test}.sh with --gpus processes; 'slurm': "
        'tools/slurm_{train,test}.sh on --partition with --gpus tasks')
    p.add_argument('--partition', default='', help='slurm partition (with --launcher slurm)')
    p.add_argument('--srun-args', default='', help='extra srun arguments (SRUN_ARGS of tools/slurm_*.sh)')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='[STAGE:]KEY=VALUE',
        help='config overrides for one stage (prefix STAGE:), or, without a prefix, for '
        "every stage whose config has the key's parent (e.g. train_dataloader)")
    p.add_argument(
        '--schedule',
        nargs='+',
        default=[],
        metavar='STAGE=N',
        help='train STAGE for N epochs (N iterations for iteration-based configs), '
        'rescaling its LR schedule; e.g. --schedule stage1=12 stage3=12 ft=150')
    p.add_argument(
        '--use',
        nargs='+',
        default=[],
        metavar='STAGE=PATH',
        help='use this output for STAGE instead of running it: a store or official ORL JSON '
        'for a mining stage, a checkpoint for a training stage')
    p.add_argument(
        '--data-root',
        help=f"run on this data root instead of the configs' data_root ({FOLDER}: the folder of images, required)")
    p.add_argument(
        '--image-list',
        metavar='FILE',
        help='train and mine on the images this COCO-style list names (the clean list that '
        'tools/analysis_tools/check_images.py --out writes), in every stage, read from the image folder of '
        'the configs (--data-root DIR for folder)')
    p.add_argument('--dry-run', action='store_true', help='print the commands and exit')
    p.add_argument('--quiet', action='store_true', help="write stage output only to the stage's log file")
    return p


def _pairs(items: List[str], flag: str, form: str, valid: Callable[[str], bool]) -> Dict[str, str]:
    """``STAGE=VALUE`` items as a dict; ValueError naming the first malformed item."""
    out = {}
    for item in items:
        stage, sep, value = item.partition('=')
        if not sep or not valid(value):
            raise ValueError(f'{flag} item {item!r} is not {form}')
        out[stage] = value
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry: returns the exit status (0 on success, 1 when a stage failed, 2 on a malformed item)."""
    args = build_parser().parse_args(argv)
    try:
        schedule = {k: int(n) for k, n in _pairs(args.schedule, '--schedule', 'STAGE=N', str.isdigit).items()}
        use = _pairs(args.use, '--use', 'STAGE=PATH', bool)
    except ValueError as e:
        print(f'[pipeline] ERROR: {e}', file=sys.stderr)
        return 2
    # Every option but the positional one has the name of a PipelineOptions field.
    named = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(PipelineOptions)}}
    opts = PipelineOptions(args.pipeline, **dict(named, schedule=schedule, use=use))
    try:
        started = time.time()
        pipe = Pipeline(opts)
        summary = pipe.run()
        if pipe.folder is not None and not opts.dry_run:
            from .reporting import folder_report
            folder_report(pipe, summary, started, time.time() - started)
    except PipelineError as e:
        print(f'[pipeline] ERROR: {e}', file=sys.stderr, flush=True)
        return 1
    return 0


def console_main() -> None:
    """``orl-pipeline``, the console script of pyproject.toml: :func:`main` under the tools' error policy."""
    from orl_plugin.utils.error_policy import run_cli
    run_cli(main)
