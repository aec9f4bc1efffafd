"""Synthetic-scenes transfer benchmark: does ORL pre-training help a detector more than BYOL?

The same detection fine-tune starts from no pre-training, BYOL at ORL's matched compute, ORL's stage 3
(and optionally ORL's own stage 1), over several seeds, with done-markers. Details, the matched-compute
formula: ``projects/orl_evidence/README.md``; command line: ``projects/orl_evidence/tools/synthetic_transfer.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from orl_plugin.pipeline import (Pipeline, PipelineOptions, data_root_options, latest_checkpoint, load_config,
                                 read_run_metrics, repo_root, resolve_configs, schedule_options, with_pythonpath)
from orl_plugin.pipeline.records import folder_digest
from orl_plugin.store import atomic_write_json

ARMS = ('random', 'byol', 'orl', 'byol-stage1')
DONE = 'benchmark_done.json'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line (``--quick`` shrinks every size)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='work_dirs/synthetic_transfer', help='output folder')
    p.add_argument(
        '--data-root',
        default=None,
        help='synthetic scenes to use; default OUT/scenes, generated with --num-images if absent '
        '(the benchmark owns its data size)')
    p.add_argument('--num-images', type=int, default=300)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--arms', nargs='+', default=['random', 'byol', 'orl'], choices=ARMS)
    p.add_argument('--stage1-epochs', type=int, default=8, help='E1 (ORL stage 1)')
    p.add_argument('--stage3-epochs', type=int, default=8, help='E3 (ORL stage 3)')
    p.add_argument('--finetune-iters', type=int, default=300)
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        '--shared-pretrain',
        dest='per_seed',
        action='store_false',
        help='pre-train once (seed 0); only the fine-tunes vary with the seed')
    group.add_argument(
        '--pretrain-per-seed',
        dest='per_seed',
        action='store_true',
        help='every seed pre-trains its own backbones (default)')
    p.set_defaults(per_seed=True)
    p.add_argument(
        '--quick', action='store_true', help='smoke run: 40 images, 1 seed, 1+1 epochs, 20 fine-tune iterations')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='[STAGE:]KEY=VALUE',
        help='extra overrides for the pre-training pipeline (and STAGE=ft: the fine-tune)')
    p.add_argument('--verbose', action='store_true', help="stream every run's output")
    args = p.parse_args(argv)
    if args.data_root is None:
        args.data_root = osp.join(args.out, 'scenes')
    if args.quick:
        args.num_images = min(args.num_images, 40)
        args.seeds = args.seeds[:1]
        args.stage1_epochs, args.stage3_epochs, args.finetune_iters = 1, 1, 20
    return args


def compute_ratio(configs: Dict[str, str]) -> Dict[str, float]:
    """Pixels through the online backbone per ORL sample / per BYOL sample, from the configs'
    ``view_size`` (stage 1), ``img_size`` and ``patch_size`` (stage 3)."""
    v_byol = float(load_config(configs['stage1'])['view_size'])
    v_orl = float(load_config(configs['stage3'])['img_size'])
    patch = float(load_config(configs['stage3'])['patch_size'])
    return dict(
        byol_view=v_byol, orl_view=v_orl, orl_patch=patch, ratio=(2 * v_orl**2 + 4 * patch**2) / (2 * v_byol**2))


def ensure_data(root: str, num_images: int) -> Dict[str, int]:
    """Synthetic scenes (seed 0) under ``root``, generated once; the image count per split."""
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
    if not osp.isfile(osp.join(root, 'annotations', 'instances_train.json')):
        print(f'[bench] generating {num_images} synthetic scenes under {root}', flush=True)
        make_synthetic_scenes(root, num_images=num_images, seed=0)
    counts = {}
    for split in ('train', 'val'):
        with open(osp.join(root, 'annotations', f'instances_{split}.json')) as f:
            counts[split] = len(json.load(f)['images'])
    return counts


def orl_kept_images(store: str) -> int:
    """Images the stage-3 data set trains on: those with kept boxes and at least one pair."""
    from orl_plugin.store import MiningStore
    s = MiningStore.open(store)
    k = len(s.knn(0)) if s.num_images else 0
    return sum(1 for i in range(s.num_images) if s.num_boxes(i) > 0 and any(len(s.pairs(i, j)) for j in range(k)))


def run_pipeline(work_dir: str, to_stage: str, schedule: Dict[str, int], options: List[str], data_root: str,
                 use: Dict[str, str], verbose: bool) -> dict:
    """The ``synthetic`` pipeline up to ``to_stage`` in ``work_dir`` (finished stages skipped); its summary."""
    opts = PipelineOptions(
        'synthetic',
        work_dir=work_dir,
        to_stage=to_stage,
        schedule=schedule,
        cfg_options=options,
        data_root=data_root,
        use=use,
        quiet=not verbose)
    return Pipeline(opts).run()


def file_identity(path: Optional[str]) -> Optional[str]:
    """A file's path, size and mtime as one digest (the pipeline's ``folder_digest`` of that file);
    None for no file. A done-marker holding it is stale once the file is rewritten."""
    if not path or not osp.isfile(path):
        return None
    return folder_digest(osp.dirname(osp.abspath(path)), [osp.basename(path)])


def finetune(config: str, pretrained: Optional[str], work_dir: str, seed: int, iters: int, data_root: str,
             extra: List[str], verbose: bool) -> Dict[str, Any]:
    """One tools/det_train.py run, as the pipeline's fine-tune stage launches it (skipped when its
    done-marker holds the same command and the same pretrained file: a retrained checkpoint at the
    same path is fine-tuned again); returns its record (``resumed``: from the marker)."""
    marker = osp.join(work_dir, DONE)
    options = (
        data_root_options(config, osp.abspath(data_root)) + schedule_options(config, iters) +
        [f'randomness.seed={seed}'] + extra)
    cmd = [
        sys.executable,
        osp.join(repo_root(), 'tools', 'det_train.py'), config, '--work-dir', work_dir, '--pretrained', pretrained
        or 'none', '--cfg-options'
    ] + options
    source = file_identity(pretrained)
    if osp.isfile(marker):
        with open(marker) as f:
            rec = json.load(f)
        if rec.get('command') == cmd and rec.get('pretrained_identity') == source:
            return dict(rec, resumed=True)
    if osp.isdir(work_dir):
        shutil.rmtree(work_dir)  # a killed or different earlier run: start clean
    os.makedirs(work_dir)
    log = osp.join(work_dir, 'benchmark_run.log')
    t0 = time.time()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, 'w') as f:
        rc = subprocess.call(
            cmd,
            stdout=None if verbose else f,
            stderr=None if verbose else subprocess.STDOUT,
            env=with_pythonpath(repo_root()))
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise RuntimeError(f'fine-tune failed (exit {rc}): {" ".join(cmd)}; see {log}')
    metrics: Dict[str, Any] = {}
    for d in sorted(os.listdir(work_dir)):
        if osp.isdir(osp.join(work_dir, d, 'vis_data')):
            metrics = read_run_metrics(osp.join(work_dir, d))
    rec = dict(
        command=cmd,
        wall_s=round(time.time() - t0, 1),
        cpu_s=round(ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime, 1),
        metrics=metrics,
        checkpoint=latest_checkpoint(work_dir),
        pretrained=pretrained,
        pretrained_identity=source,
        seed=seed,
        log=log)
    atomic_write_json(marker, rec, indent=2)
    return dict(rec, resumed=False)


def summarise(values: List[float]) -> Dict[str, Any]:
    """Mean, sample standard deviation, values and count."""
    return dict(
        mean=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        values=values,
        n=len(values))


def _cost(stages: Dict[str, dict], names: List[str]) -> Dict[str, float]:
    return dict(
        wall_s=round(sum(stages[n].get('wall_s') or 0 for n in names), 1),
        cpu_s=round(sum(stages[n].get('cpu_s') or 0 for n in names), 1))


def main(argv: Optional[List[str]] = None) -> int:
    """Pre-train, fine-tune every arm and seed, write and print the results."""
    args = parse_args(argv)
    t_start = time.time()
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    counts = ensure_data(args.data_root, args.num_images)
    _, configs = resolve_configs('synthetic')
    ratio = compute_ratio(configs)
    is_ft = lambda o: o.split(':', 1)[0] in ('ft', 'finetune')  # noqa: E731
    extra_ft = [o.split(':', 1)[1] for o in args.cfg_options if is_ft(o)]
    extra_pre = [o for o in args.cfg_options if not is_ft(o)]

    results: Dict[str, Any] = dict(
        setup=dict(
            data_root=osp.abspath(args.data_root),
            images=counts,
            seeds=args.seeds,
            arms=args.arms,
            stage1_epochs=args.stage1_epochs,
            stage3_epochs=args.stage3_epochs,
            finetune_iters=args.finetune_iters,
            pretrain_per_seed=args.per_seed,
            pixel_ratio=ratio,
            configs=configs,
            quick=args.quick,
            cfg_options=args.cfg_options),
        pretrain={},
        runs={})
    pre_seeds = args.seeds if args.per_seed else [args.seeds[0]]
    ckpts: Dict[tuple, Optional[str]] = {}
    shared_ss: Dict[str, str] = {}
    needs_orl = any(a in args.arms for a in ('orl', 'byol', 'byol-stage1'))  # byol: matched to ORL's run
    for ps in pre_seeds:
        ckpts[('random', ps)] = None
        if not needs_orl:
            continue
        seed_opt = [f'randomness.seed={ps}']
        print(
            f'[bench] pre-training ORL (seed {ps}): stage 1 {args.stage1_epochs} ep, mining, '
            f'stage 3 {args.stage3_epochs} ep',
            flush=True)
        st = run_pipeline(
            osp.join(out, 'pretrain',
                     f'orl_seed{ps}'), 'stage3', {'stage1': args.stage1_epochs, 'stage3': args.stage3_epochs},
            seed_opt + extra_pre, args.data_root, shared_ss, args.verbose)['stages']
        # Selective search does not depend on the seed: later seeds reuse the first one's store.
        shared_ss = {'selective_search': st['selective_search']['outputs']['store']}
        n3 = orl_kept_images(st['correspondence']['outputs']['store'])
        results['pretrain'][f'orl_seed{ps}'] = dict(
            training=_cost(st, ['stage1', 'stage3']),
            stage1=_cost(st, ['stage1']),
            mining=_cost(st, ['knn', 'selective_search', 'correspondence']),
            stage3_images=n3,
            metrics={k: v['metrics'] for k, v in st.items()})
        ckpts[('orl', ps)] = st['stage3']['outputs']['checkpoint']
        ckpts[('byol-stage1', ps)] = st['stage1']['outputs']['checkpoint']
        if 'byol' in args.arms:
            orl_units = args.stage1_epochs * counts['train'] + args.stage3_epochs * n3 * ratio['ratio']
            e_byol = max(1, round(orl_units / counts['train']))
            print(f'[bench] pre-training BYOL (seed {ps}): {e_byol} epochs (matched)', flush=True)
            sb = run_pipeline(
                osp.join(out, 'pretrain', f'byol_seed{ps}'), 'stage1', {'stage1': e_byol}, seed_opt + extra_pre,
                args.data_root, {}, args.verbose)['stages']
            results['pretrain'][f'byol_seed{ps}'] = dict(
                epochs=e_byol,
                training=_cost(sb, ['stage1']),
                matched=dict(orl_byol_sample_equivalents=round(orl_units, 1), byol_samples=e_byol * counts['train']))
            ckpts[('byol', ps)] = sb['stage1']['outputs']['checkpoint']
        atomic_write_json(osp.join(out, 'results.json'), results, indent=2)

    for arm in args.arms:
        for seed in args.seeds:
            ps = seed if args.per_seed else pre_seeds[0]
            print(f'[bench] fine-tune from {arm} (seed {seed}): {args.finetune_iters} iterations', flush=True)
            rec = finetune(configs['finetune'], ckpts[(arm, ps)], osp.join(out, 'finetune', f'{arm}_seed{seed}'), seed,
                           args.finetune_iters, args.data_root, extra_ft, args.verbose)
            m = rec['metrics']
            print(
                f"[bench]   bbox mAP {m.get('val/coco/bbox_mAP')}, mAP@0.5 {m.get('val/coco/bbox_mAP_50')} "
                f"({rec['wall_s']:.0f} s)",
                flush=True)
            results['runs'][f'{arm}_seed{seed}'] = dict(
                arm=arm,
                seed=seed,
                pretrained=rec['pretrained'],
                wall_s=rec['wall_s'],
                cpu_s=rec.get('cpu_s'),
                metrics=m,
                log=rec.get('log'))
            atomic_write_json(osp.join(out, 'results.json'), results, indent=2)

    table: Dict[str, Any] = {}
    for arm in args.arms:
        runs = [results['runs'][f'{arm}_seed{s}']['metrics'] for s in args.seeds]
        table[arm] = {
            m: summarise([float(r.get(f'val/coco/{m}', float('nan'))) for r in runs])
            for m in ('bbox_mAP', 'bbox_mAP_50')
        }
    results['table'] = table
    results['elapsed_s'] = round(time.time() - t_start, 1)
    atomic_write_json(osp.join(out, 'results.json'), results, indent=2)
    md = markdown(results, args, counts, configs, ratio)
    tmp = osp.join(out, f'results.md.tmp-{os.getpid()}')
    with open(tmp, 'w') as f:
        f.write(md)
    os.replace(tmp, osp.join(out, 'results.md'))
    print(md)
    print(f'[bench] {osp.join(out, "results.json")}, {osp.join(out, "results.md")}')
    return 0


def markdown(results: dict, args: argparse.Namespace, counts: Dict[str, int], configs: Dict[str, str],
             ratio: Dict[str, float]) -> str:
    """``results.md``: the setup, the matched budgets and one row per arm."""
    pre = results['pretrain']
    byol_ep = sorted({v['epochs'] for k, v in pre.items() if k.startswith('byol')})
    lines = [
        '# Synthetic transfer benchmark', '', f"Data: {counts['train']} train / {counts['val']} val synthetic scenes "
        f"(`{results['setup']['data_root']}`). Fine-tune: `{osp.relpath(configs['finetune'], repo_root())}`, "
        f'{args.finetune_iters} iterations, val bbox mAP at the end. Seeds {args.seeds} '
        f"({'each seed pre-trains its own backbones' if args.per_seed else 'one shared pre-training'}).", '',
        f'Pre-training: ORL = stage 1 {args.stage1_epochs} epochs + stage 3 {args.stage3_epochs} epochs; '
        f"BYOL = {', '.join(map(str, byol_ep)) or '-'} epochs, matched to ORL in pixels forwarded and "
        f"back-propagated through the online backbone (an ORL sample = {ratio['ratio']:.2f} BYOL samples: "
        f"2 views of {ratio['orl_view']:.0f} px + 4 RoI patches of {ratio['orl_patch']:.0f} px vs 2 views of "
        f"{ratio['byol_view']:.0f} px).", '',
        '| init | bbox mAP (mean ± std) | mAP@0.5 (mean ± std) | bbox mAP per seed | pre-training CPU s |',
        '|---|---|---|---|---|'
    ]
    for arm in args.arms:
        a, b = results['table'][arm]['bbox_mAP'], results['table'][arm]['bbox_mAP_50']
        # CPU seconds of the pre-training runs behind this arm (mining not included), mean over seeds.
        prefix, part = {'orl': ('orl_', 'training'), 'byol': ('byol_', 'training'),
                        'byol-stage1': ('orl_', 'stage1')}.get(arm, ('', ''))
        cpu = [v[part]['cpu_s'] for k, v in pre.items() if prefix and k.startswith(prefix)]
        cost = f'{statistics.fmean(cpu):.0f}' if cpu else '-'
        lines.append(f"| {arm} | {a['mean']:.4f} ± {a['std']:.4f} | {b['mean']:.4f} ± {b['std']:.4f} | " +
                     ', '.join(f'{v:.4f}' for v in a['values']) + f' | {cost} |')
    lines += [
        '', f"std: sample standard deviation over {len(args.seeds)} seed(s). "
        f"Total benchmark time {results['elapsed_s'] / 60:.1f} min.", ''
    ]
    return '\n'.join(lines)
