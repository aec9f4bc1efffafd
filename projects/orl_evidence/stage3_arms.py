"""Stage-3 arms at matched compute: does learning from object pairs beat image-level learning?

Every arm trains ORL's stage 3 with the contrastive objective from the same random initialisation
per seed; they differ only in the branches that are on and in where the inter-RoI pairs come from.
What it measures, its cost and its command: ``projects/orl_evidence/README.md``; the command line
is ``projects/orl_evidence/tools/stage3_arms.py``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from orl_plugin.pipeline import load_config, repo_root, resolve_configs, with_pythonpath
from orl_plugin.store import atomic_write_json

from . import mechanism as mech
from .pair_controls import object_pairs_store, random_pairs_store
from .probes import ProbeSet, crop_paired_difference

STAGE3_CONFIG = 'configs/orl/stage3/orl-mocov2_resnet18_1xb32-coslr-30e_synthetic.py'
#: arm -> (branch weights global / intra / inter, source of the inter-RoI pairs)
ARMS: Dict[str, Tuple[Tuple[int, int, int], Optional[str]]] = {
    'image': ((1, 0, 0), None),
    'intra': ((1, 1, 0), None),
    'inter-random': ((1, 1, 1), 'random'),
    'inter-instrument': ((1, 1, 1), 'instrument'),
    'inter-mocov2': ((1, 1, 1), 'mocov2'),
    # a diagnostic, not ORL: the instrument's pairs that lie on same-category ground-truth objects only
    'inter-objects': ((1, 1, 1), 'objects'),
}
DEFAULT_ARMS = ('image', 'intra', 'inter-random', 'inter-instrument', 'inter-mocov2')
LABELS = {
    'image': 'image level only (the MoCo v2 baseline)',
    'intra': '+ intra-RoI',
    'inter-random': '+ intra + inter-RoI on random pairs (control)',
    'inter-instrument': "+ intra + inter-RoI on the instrument's pairs (ceiling)",
    'inter-mocov2': "+ intra + inter-RoI on a MoCo v2 stage 1's pairs (the chain, no labels)",
    'inter-objects': "+ intra + inter-RoI on the instrument's object pairs only (diagnostic: reads labels)",
}
MINERS = ('instrument', 'mocov2')  # stage-1 models whose pairs the inter arms learn from
DONE = 'train_done.json'
PROBE_DONE = 'probes.crops.done.json'  # the probe protocol's marker (a new protocol: a new name, so all re-probe)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line (``--quick`` shrinks every size)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='work_dirs/stage3_arms', help='output folder (scenes, runs, results.json)')
    p.add_argument('--arms', nargs='+', default=list(DEFAULT_ARMS), choices=list(ARMS))
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--num-images', type=int, default=960, help='v2 scenes stage 2 and 3 run on (20 %% held out)')
    p.add_argument('--probe-images', type=int, default=2000, help='v2 scenes of the probe set (generator seed 2)')
    p.add_argument('--img-size', type=int, default=256)
    p.add_argument('--design', default='default', help="scene design (projects/orl_evidence/scene_premise.DESIGNS)")
    p.add_argument('--epochs', type=int, default=17, help='stage-3 epochs of the full (inter-RoI) arms')
    p.add_argument('--view-size', type=int, default=96, help='image views (px)')
    p.add_argument('--patch-size', type=int, default=48, help='RoI patches (px)')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=0.03)
    p.add_argument('--stage1-epochs', type=int, default=10, help='epochs of the MoCo v2 stage 1 of the chain')
    p.add_argument('--instrument-epochs', type=int, default=6)
    p.add_argument('--instrument-scenes', type=int, default=2000, help="the instrument's own training scenes")
    p.add_argument('--ft-iters', type=int, default=30, help='detection fine-tune iterations (0: none)')
    p.add_argument('--max-probe-objects', type=int, default=2000)
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE', help='for every stage-3 run')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='cuda: the trainings on the visible GPU')
    p.add_argument('--mine-only', action='store_true', help='stop after the pair stores are mined')
    p.add_argument('--collect', action='store_true', help='run nothing: the table of a run in progress')
    p.add_argument('--quick', action='store_true', help='tiny smoke run (the suite runs it)')
    p.add_argument('--verbose', action='store_true')
    args = p.parse_args(argv)
    if args.quick:
        args.num_images, args.probe_images, args.img_size = 24, 24, 128
        args.seeds = args.seeds[:1]
        args.epochs, args.stage1_epochs, args.instrument_epochs = 1, 1, 1
        args.view_size, args.patch_size, args.batch_size = 32, 16, 4
        args.ft_iters = min(args.ft_iters, 2)
        args.instrument_scenes = min(args.instrument_scenes, 24)
        args.max_probe_objects = min(args.max_probe_objects, 200)
    args.out = osp.realpath(args.out)  # the run commands hold it: one folder, one name (symlinks resolved)
    return args


# ----------------------------------------------------------------------------- compute matching
def sample_cost(weights: Tuple[int, int, int], view: int, patch: int) -> int:
    """Backbone pixels forwarded per sample: each branch that is on encodes its two views with the
    online and the target network (the symmetric objective)."""
    return sum(4 * side * side for on, side in zip(weights, (view, patch, patch)) if on)


def matched_epochs(arm: str, args: argparse.Namespace) -> int:
    """The arm's epochs at the full arms' compute: image-level and intra arms get the extra epochs."""
    full = sample_cost((1, 1, 1), args.view_size, args.patch_size)
    return max(1, round(args.epochs * full / sample_cost(ARMS[arm][0], args.view_size, args.patch_size)))


# ----------------------------------------------------------------------------- mining
def mining_args(args: argparse.Namespace) -> argparse.Namespace:
    """The namespace mechanism's helpers read (its --quick sizes, no user overrides)."""
    return argparse.Namespace(
        quick=args.quick,
        cfg_options=[],
        collect=args.collect,
        verbose=args.verbose,
        instrument_epochs=args.instrument_epochs,
        stage1_epochs=args.stage1_epochs)


def mine(run: mech.Run, miner: str, data_root: str) -> Optional[Dict[str, Any]]:
    """Stage 1 (``miner``), 2a, 2b (shared), 2c through the pipeline, seed 0: the correspondence store
    and 2c's pair figures."""
    margs = mining_args(run.args)
    work = osp.join(run.args.out, 'mining', miner)
    recipe = mech.write_recipe(run.args.out, miner)
    options = mech.arm_options(miner, 0, margs, run.instrument_root)
    schedule = {'stage1': run.args.instrument_epochs if miner == 'instrument' else run.args.stage1_epochs}
    use: Dict[str, str] = {}
    for stage in ('stage1', 'knn', 'selective_search', 'correspondence'):
        if stage == 'selective_search' and run.shared_ss:
            continue
        rec = run.step(
            f'{miner} pairs',
            stage,
            lambda stage=stage: run.pipeline(work, recipe, stage, options, data_root, dict(use, **run.shared_ss),
                                             schedule))
        if not rec:
            return None
        out = rec['outputs']
        if stage == 'stage1':
            use['stage1'] = out['checkpoint']
        elif stage == 'knn':
            use['knn'] = out['store']
        elif stage == 'selective_search':
            run.shared_ss['selective_search'] = out['store']
        else:
            return dict(store=out['store'], metrics=mech._metrics(rec, 'correspondence'))
    return None


# ----------------------------------------------------------------------------- stage 3
def stage3_options(arm: str, seed: int, store: str, data_root: str, args: argparse.Namespace) -> List[str]:
    """cfg-options of one arm's stage-3 run."""
    weights = ARMS[arm][0]
    epochs = matched_epochs(arm, args)
    opts = [
        f'train_dataloader.dataset.data_root={data_root}/', f'train_dataloader.dataset.correspondence_file={store}',
        f'model.global_loss_weight={weights[0]}', f'model.intra_loss_weight={weights[1]}',
        f'model.inter_loss_weight={weights[2]}', f'train_cfg.max_epochs={epochs}', f'param_scheduler.0.T_max={epochs}',
        f'param_scheduler.0.end={epochs}', f'optim_wrapper.optimizer.lr={args.lr}',
        f'train_dataloader.batch_size={args.batch_size}', f'randomness.seed={seed}',
        f'default_hooks.checkpoint.interval={epochs}', 'default_hooks.checkpoint.max_keep_ckpts=1'
    ]
    for v in (0, 1):
        opts += [
            f'train_dataloader.dataset.pipeline.1.img_pipelines.{v}.0.scale={args.view_size}',
            f'train_dataloader.dataset.pipeline.1.patch_pipelines.{v}.0.size={args.patch_size}'
        ]
    if args.quick:
        opts += ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']
    return opts + args.cfg_options


def train_stage3(work: str, options: List[str], verbose: bool) -> Dict[str, Any]:
    """``tools/train.py`` of the contrastive stage-3 config; resumes a killed run of the same
    command, reuses a finished one (its marker), starts clean when the command changed."""
    cmd = [
        sys.executable,
        osp.join(repo_root(), 'tools', 'train.py'),
        osp.join(repo_root(), STAGE3_CONFIG), '--work-dir', work, '--cfg-options', *options
    ]
    marker, started = osp.join(work, DONE), osp.join(work, 'command.json')
    if osp.isfile(marker):
        rec = mech.collected(marker)
        if rec.get('command') == cmd:
            return rec
    if mech.COLLECT:
        raise mech.NotDone(f'no {marker}')
    if osp.isfile(started) and json.load(open(started)) != cmd:
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    atomic_write_json(started, cmd)
    t0 = time.time()
    log = osp.join(work, 'train_stdout.log')
    with open(log, 'a') as f:
        rc = subprocess.call(
            cmd + ['--resume'],
            stdout=None if verbose else f,
            stderr=None if verbose else subprocess.STDOUT,
            env=with_pythonpath(repo_root()))
    if rc:
        err = RuntimeError(f'stage 3 failed (exit {rc}); see {log}')
        err.log = log  # type: ignore[attr-defined]
        raise err
    with open(osp.join(work, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    rec = dict(command=cmd, checkpoint=ckpt, wall_s=round(time.time() - t0, 1))
    atomic_write_json(marker, rec, indent=2)
    return dict(rec, resumed=False)


def build_model(seed: int) -> 'Any':
    """The contrastive stage-3 model as initialised with ``seed``: every arm's starting point."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import orl_plugin  # noqa: F401
    cfg = Config.fromfile(osp.join(repo_root(), STAGE3_CONFIG))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            torch.manual_seed(seed)
            model = MODELS.build(cfg.model)
            model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def probe_checkpoint(probe_set: ProbeSet, path: Optional[str], seed: int = 0) -> Dict[str, Any]:
    """Every probe figure of a stage-3 checkpoint's backbone (None: the seed's random init)."""
    from orl_plugin.utils.checkpoint import get_state_dict, load_checkpoint_file
    model = build_model(seed)
    if path:
        sd = get_state_dict(load_checkpoint_file(path))
        model.backbone.load_state_dict({k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')})
    return probe_set.probe(model)


def save_init(seed: int, path: str) -> str:
    """The seed's random initialisation as a portable checkpoint (for the fine-tune)."""
    from orl_plugin.utils.checkpoint import atomic_torch_save
    if not osp.isfile(path):
        atomic_torch_save(dict(state_dict=build_model(seed).state_dict(), meta=dict(seed=seed)), path)
    return path


def run_seed(run: mech.Run, seed: int, stores: Dict[str, str], data_root: str, probe_set: ProbeSet,
             ft_config: str) -> None:
    """The random-init baseline and every arm of one seed."""
    args = run.args
    res = run.results
    base = osp.join(args.out, 'runs', f'random_seed{seed}')
    os.makedirs(base, exist_ok=True)
    init = save_init(seed, osp.join(base, 'random_init.pth'))
    rec: Dict[str, Any] = dict(checkpoint=init)
    probe = run.step(
        f'random seed {seed}', 'probe', lambda: mech.marker_step(
            osp.join(base, PROBE_DONE), lambda: probe_checkpoint(probe_set, None, seed), source=init))
    if probe:
        rec['probe'] = {k: v for k, v in probe.items() if k != 'resumed'}
    if args.ft_iters:
        ft = run.step(f'random seed {seed}', 'finetune',
                      lambda: mech.finetune(run, ft_config, init, osp.join(base, 'finetune'), seed, data_root))
        if ft:
            rec['finetune'] = ft['metrics']
    res['random_init'][str(seed)] = rec
    run.save()
    for arm in args.arms:
        source = ARMS[arm][1]
        store = stores.get(source or 'instrument')
        who = f'{arm} seed {seed}'
        if not store:
            run.say(f'{who}: skipped (no {source or "instrument"} store)')
            continue
        work = osp.join(args.out, 'runs', f'{arm}_seed{seed}')
        out: Dict[str, Any] = dict(arm=arm, seed=seed, epochs=matched_epochs(arm, args), store=store)
        res['arms'].setdefault(arm, {})[str(seed)] = out
        tr = run.step(who, 'stage3',
                      lambda: train_stage3(work, stage3_options(arm, seed, store, data_root, args), args.verbose))
        if not tr:
            continue
        ckpt = tr['checkpoint']
        out.update(checkpoint=ckpt, wall_s=tr.get('wall_s'))
        probe = run.step(
            who, 'probe', lambda: mech.marker_step(
                osp.join(work, PROBE_DONE), lambda: probe_checkpoint(probe_set, ckpt), source=ckpt))
        if probe:
            out['probe'] = {k: v for k, v in probe.items() if k != 'resumed'}
        if args.ft_iters:
            ft = run.step(who, 'finetune',
                          lambda: mech.finetune(run, ft_config, ckpt, osp.join(work, 'finetune'), seed, data_root))
            if ft:
                out['finetune'] = ft['metrics']
        run.save()


# ----------------------------------------------------------------------------- table and targets
FIGURES = ('object_knn_bn_recalibrated', 'object_linear_bn_recalibrated', 'object_knn',
           'view_retrieval_bn_recalibrated', 'view_rank_bn_recalibrated')


def build_table(results: Dict[str, Any]) -> Dict[str, Any]:
    """Mean/std over seeds of every figure of every arm and of the random initialisation."""
    table: Dict[str, Any] = {}
    rows = dict(random_init=list(results['random_init'].values()))
    rows.update({arm: list(seeds.values()) for arm, seeds in results['arms'].items()})
    for name, recs in rows.items():
        table[name] = {k: mech.summarise([mech._get(r, f'probe/{k}') for r in recs]) for k in FIGURES}
        table[name]['det_mAP'] = mech.summarise([mech._get(r, 'finetune/bbox_mAP') for r in recs])
        table[name]['chance'] = mech.summarise([mech._get(r, 'probe/object_chance') for r in recs])
    return table


def paired_difference(results: Dict[str, Any], a: str, b: str, figure: str) -> Optional[Dict[str, float]]:
    """Mean and standard error of arm ``a`` minus arm ``b`` (``random_init`` allowed) over the seeds
    both have: the seeds pair them (same initialisation)."""

    def per_seed(arm: str) -> Dict[str, float]:
        recs = results['random_init'] if arm == 'random_init' else results['arms'].get(arm, {})
        return {s: v for s, r in recs.items() if (v := mech._get(r, f'probe/{figure}')) is not None}

    va, vb = per_seed(a), per_seed(b)
    seeds = sorted(set(va) & set(vb))
    diffs = [va[s] - vb[s] for s in seeds]
    if not diffs:
        return None
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean)**2 for d in diffs) / (len(diffs) - 1) / len(diffs)) if len(diffs) > 1 else 0.0
    out = dict(mean=mean, se=se, n=len(diffs), z=mean / se if se > 0 else (math.inf if mean > 0 else -math.inf))
    crops = crop_difference(results, a, b, figure, seeds)
    if crops:
        out['crop_se'] = crops['se']
    return out


def crop_difference(results: Dict[str, Any], a: str, b: str, figure: str,
                    seeds: List[str]) -> Optional[Dict[str, float]]:
    """The difference's standard error over the probe's query crops (both arms probed on the same crops),
    averaged over ``seeds``: what a single seed can say, the probe set's noise without the seeds' noise."""
    key = figure.replace('object_linear', 'object_linear_correct')
    if key == figure:
        return None

    def correct(arm: str, seed: str) -> Optional[str]:
        recs = results['random_init'] if arm == 'random_init' else results['arms'].get(arm, {})
        value = recs.get(seed, {}).get('probe', {}).get(key)
        return value if isinstance(value, str) else None

    pairs = [(correct(a, s), correct(b, s)) for s in seeds]
    if not pairs or any(x is None or y is None for x, y in pairs):
        return None
    per_seed = [crop_paired_difference(x, y) for x, y in pairs]
    return dict(se=math.sqrt(sum(d['se']**2 for d in per_seed)) / len(per_seed), crops=per_seed[0]['crops'])


def evaluate_targets(results: Dict[str, Any], figure: str) -> List[Dict[str, Any]]:
    """The targets as PASS (True) / FAIL (False) / not measured (None), on ``figure``."""

    def target(name: str, a: str, b: str, z_needed: float, extra: Optional[Tuple[str, str]] = None) -> Dict[str, Any]:
        d = paired_difference(results, a, b, figure)
        if d is None:
            return dict(name=name, passed=None, measured='not measured')
        if d['n'] < 2:
            crop = f" ± {d['crop_se']:.4f} SE over the probe's crops" if 'crop_se' in d else ''
            return dict(
                name=name,
                passed=None,
                measured=f"{a} - {b}: {d['mean']:+.4f}{crop}, one seed (a target needs 2+ seeds of both "
                'arms: the seeds\' noise is not measured)')
        ok = d['z'] >= z_needed
        text = f"{a} - {b}: {d['mean']:+.4f} ± {d['se']:.4f} SE ({d['z']:+.1f} SE, n = {d['n']})"
        if extra:
            e = paired_difference(results, *extra, figure)
            ok = ok and e is not None and e['mean'] > 0
            text += f"; {extra[0]} - {extra[1]}: " + ('-' if e is None else f"{e['mean']:+.4f} ± {e['se']:.4f}")
        return dict(name=name, passed=ok, measured=text)

    out = [
        target('regime: the image-level arm beats the BN-recalibrated random initialisation by >= 3 SE', 'image',
               'random_init', 3),
        target(
            "ceiling: inter-RoI on the instrument's pairs beats the image-level arm by >= 3 SE, and the "
            'BN-recalibrated random initialisation', 'inter-instrument', 'image', 3,
            ('inter-instrument', 'random_init')),
        target("the chain: inter-RoI on a MoCo v2 stage 1's pairs beats the image-level arm by >= 2 SE", 'inter-mocov2',
               'image', 2),
    ]
    gain = paired_difference(results, 'inter-random', 'intra', figure)
    for miner in MINERS:
        d = paired_difference(results, f'inter-{miner}', 'inter-random', figure)
        out.append(
            dict(
                name=f'control: inter-RoI on {miner} pairs beats inter-RoI on random pairs',
                passed=None if d is None or d['n'] < 2 else d['mean'] > 0,
                measured=_difference_text(d) +
                ('' if gain is None else f"; random pairs' gain over + intra: {_difference_text(gain)}")))
    return out


def _difference_text(d: Optional[Dict[str, float]]) -> str:
    if d is None:
        return 'not measured'
    if d['n'] > 1:
        return f"{d['mean']:+.4f} ± {d['se']:.4f} SE (n = {d['n']})"
    crop = f" ± {d['crop_se']:.4f} SE over the probe's crops" if 'crop_se' in d else ''
    return f"{d['mean']:+.4f}{crop}, one seed"


def _fmt(s: Optional[Dict[str, Any]], digits: int = 3) -> str:
    return mech._fmt(s, digits)


def markdown(results: Dict[str, Any]) -> str:
    """The result table and targets as markdown."""
    t, setup = results['table'], results['setup']
    lines = [
        f"# Stage-3 arms at matched compute ({setup['images']['train']} train v2 scenes, probe set "
        f"{setup['probe_images']} scenes; seeds {setup['seeds']}; views {setup['view_size']} px, patches "
        f"{setup['patch_size']} px, batch {setup['batch_size']}, lr {setup['lr']}; the full arms "
        f"{setup['epochs']} epochs, the others matched by backbone pixel-forwards)", '',
        'Each cell: mean ± std over seeds. Object probes on the probe set\'s held-out crops with BN statistics '
        'recalibrated on its reference crops (the same for every network); chance (most common class) '
        f"{_fmt(results['table'].get('random_init', {}).get('chance'))}.", '',
        '| arm | epochs | object linear probe | object kNN probe | object kNN, own BN | view retrieval | '
        'view rank | det mAP | wall s (one seed) |', '|---|---|---|---|---|---|---|---|---|'
    ]
    for name in ['random_init', *[a for a in ARMS if a in t]]:
        row = t[name]
        seeds = results['arms'].get(name, {})
        wall = next((r.get('wall_s') for r in seeds.values() if r.get('wall_s')), None)
        lines.append(f"| {LABELS.get(name, 'random initialisation')} | "
                     f"{seeds and next(iter(seeds.values())).get('epochs', '-') or '-'} | "
                     f"{_fmt(row['object_linear_bn_recalibrated'])} | {_fmt(row['object_knn_bn_recalibrated'])} | "
                     f"{_fmt(row['object_knn'])} | {_fmt(row['view_retrieval_bn_recalibrated'])} | "
                     f"{_fmt(row['view_rank_bn_recalibrated'], 1)} | {_fmt(row['det_mAP'], 4)} | "
                     f"{'-' if wall is None else f'{wall:.0f}'} |")
    mining = results.get('mining') or {}
    if mining:
        lines += [
            '', '| pairs | pair precision (random) | object-pair rate (random) | same category of object '
            'pairs (random) |', '|---|---|---|---|'
        ]
        for miner, m in mining.items():
            c = m.get('metrics') or {}
            f = lambda k: c.get(k, float('nan'))  # noqa: E731
            lines.append(f"| {miner} | {f('pair_precision'):.3f} ({f('pair_precision_random'):.3f}) | "
                         f"{f('pair_object_rate'):.3f} ({f('pair_object_rate_random'):.3f}) | "
                         f"{f('pair_precision_on_objects'):.3f} ({f('pair_precision_on_objects_random'):.3f}) |")
    for figure, title in (('object_linear_bn_recalibrated', 'linear probe'), ('object_knn_bn_recalibrated',
                                                                              'kNN probe')):
        lines += ['', f'## Targets ({title}; SE: standard error of the paired difference over seeds)', '']
        for tg in results['targets'][figure]:
            verdict = {True: 'PASS', False: 'FAIL', None: 'NOT MEASURED'}[tg['passed']]
            lines.append(f"- **{verdict}** {tg['name']}: {tg['measured']}")
    if results.get('failures'):
        lines += ['', '## Failed steps', ''
                  ] + [f"- {f['who']} {f['step']}: {f['error']} (log: {f['log']})" for f in results['failures']]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run (or resume, or ``--collect``) every arm and seed; write ``results.json`` and ``results.md``."""
    args = parse_args(argv)
    mech.COLLECT = args.collect
    os.makedirs(args.out, exist_ok=True)
    run = mech.Run(args)
    run.results = dict(setup={}, mining={}, random_init={}, arms={}, failures=[], step_seconds={})
    design = mech.premise.DESIGNS[args.design] if args.design != 'default' else {}
    data_root = osp.join(args.out, 'scenes')
    counts = mech.ensure_scenes(data_root, args.num_images, args.img_size, design)
    probe_root = osp.join(args.out, 'probe_scenes')
    mech.ensure_scenes(probe_root, args.probe_images, args.img_size, design, seed=2)
    need = {ARMS[a][1] for a in args.arms} | {'instrument'}
    if 'instrument' in need and args.instrument_scenes:
        run.instrument_root = osp.join(args.out, f'instrument_scenes_{args.instrument_scenes}')
        mech.ensure_scenes(run.instrument_root, args.instrument_scenes, args.img_size, {}, seed=1)
    cfg = load_config(osp.join(repo_root(), STAGE3_CONFIG))
    views = [v for v in cfg['train_dataloader']['dataset']['pipeline'][1]['img_pipelines']]
    for view in views:
        view[0]['scale'] = args.view_size
    # --quick: a smoke run, so a coarse grid and 2 folds (70 L-BFGS fits per probe become 8)
    grid = dict(weight_decays=(1e-2, 1e-1), folds=2) if args.quick else {}
    probe_set = ProbeSet(probe_root, views, max_objects=args.max_probe_objects, **grid)
    _, preset = resolve_configs('synthetic')
    run.results['setup'] = dict(
        images=counts,
        probe_images=args.probe_images,
        img_size=args.img_size,
        design=args.design,
        seeds=args.seeds,
        arms=args.arms,
        epochs=args.epochs,
        view_size=args.view_size,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        lr=args.lr,
        stage1_epochs=args.stage1_epochs,
        instrument_epochs=args.instrument_epochs,
        instrument_scenes=args.instrument_scenes,
        ft_iters=args.ft_iters,
        quick=args.quick,
        config=STAGE3_CONFIG,
        cfg_options=args.cfg_options,
        matched_epochs={a: matched_epochs(a, args) for a in args.arms},
        instrument=mech.INSTRUMENT_LABEL)
    if args.device == 'cpu' and not args.collect:
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # the stages' processes too
    stores: Dict[str, str] = {}
    for miner in [m for m in MINERS if m in need]:
        mined = mine(run, miner, data_root)
        if mined:
            stores[miner] = mined['store']
            run.results['mining'][miner] = mined
    if 'random' in need and 'instrument' in stores:
        path = osp.join(args.out, 'mining', 'random', 'correspondence.orlstore')
        if not osp.isdir(path) and not args.collect:
            random_pairs_store(stores['instrument'], path, seed=0)
        if osp.isdir(path):
            stores['random'] = path
    if 'objects' in need and 'instrument' in stores:
        path = osp.join(args.out, 'mining', 'objects', 'correspondence.orlstore')
        if not osp.isdir(path) and not args.collect:
            object_pairs_store(stores['instrument'], osp.join(data_root, 'annotations', 'instances_train.json'), path)
        if osp.isdir(path):
            stores['objects'] = path
    run.save()
    if args.mine_only:
        run.say(f'mined: {stores}')
        return 0
    for seed in args.seeds:
        run_seed(run, seed, stores, data_root, probe_set, preset['finetune'])
    run.results['table'] = build_table(run.results)
    run.results['targets'] = {f: evaluate_targets(run.results, f) for f in FIGURES[:2]}
    run.save()
    md = markdown(run.results)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(md + '\n')
    print(md)
    run.say(f'results: {run.results_path}')
    return 0
