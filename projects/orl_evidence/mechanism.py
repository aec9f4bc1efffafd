"""The mechanism yardstick: does each ORL stage do its job on scenes with ground truth?

Per stage-1 arm (random init, BYOL, MoCo v2, the measuring instrument) and seed it runs the pipeline and
measures every stage beside its chance level; resumable. What it measures, its cost and its command:
``projects/orl_evidence/README.md``; the command line is ``projects/orl_evidence/tools/mechanism.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from orl_plugin.pipeline import Pipeline, PipelineOptions, load_config, repo_root, resolve_configs
from orl_plugin.store import atomic_write_json

from . import scene_premise as premise
from . import stage1_curve as curve
from . import synthetic_transfer as transfer

if TYPE_CHECKING:  # annotations only: the module imports torch where it uses it
    import torch

ARMS = ('random', 'byol', 'mocov2', 'instrument')
SELF_SUPERVISED = ('byol', 'mocov2')
INSTRUMENT_LABEL = 'MEASURING INSTRUMENT, NOT ORL (supervised, ground-truth labels)'
INSTRUMENT_CONFIGS = 'projects/orl_evidence/configs/instrument'
_BYOL = dict(
    stage1='configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py',
    knn='configs/orl/stage2/knn_byol-resnet18_1xb64_synthetic.py',
    correspondence='configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py')
#: Each arm's stage 1 and its 2a/2c configs (the model that reads its checkpoint); 2b and stage 3 are shared.
ARM_CONFIGS: Dict[str, Dict[str, str]] = {
    'random': _BYOL,
    'byol': _BYOL,
    'mocov2': dict(
        stage1='configs/mocov2/mocov2_resnet18_1xb32-coslr-30e_synthetic.py',
        knn='configs/orl/stage2/knn_mocov2-resnet18_1xb64_synthetic.py',
        correspondence='configs/orl/stage2/correspondence_mocov2-resnet18_1xb64_synthetic.py'),
    'instrument': dict(
        stage1=f'{INSTRUMENT_CONFIGS}/instrument-gt-classifier_resnet18_1xb32-coslr-6e_synthetic-crops.py',
        knn=f'{INSTRUMENT_CONFIGS}/instrument-knn_resnet18_synthetic.py',
        correspondence=f'{INSTRUMENT_CONFIGS}/instrument-correspondence_resnet18_synthetic.py'),
}
SHARED_CONFIGS = dict(
    selective_search='configs/orl/stage2/selective-search_synthetic.py',
    stage3='configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py')
PROBE_CONFIG = _BYOL['stage1']  # every backbone is probed in this model, with these training views
CORR_KEYS = ('pair_precision', 'pair_object_rate', 'pair_precision_on_objects')

#: The repository this project lives in (its configs are named relative to it, as the shipped ones are).
PROJECT_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def config_path(rel: str) -> str:
    """A config of :data:`ARM_CONFIGS` / :data:`SHARED_CONFIGS` as an absolute path: the project's own
    (``projects/...``) in this checkout, the shipped ones where the pipeline finds them (``repo_root()``)."""
    return osp.join(PROJECT_REPO if rel.startswith('projects/') else repo_root(), rel)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line (``--quick`` shrinks every size)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='work_dirs/mechanism', help='output folder (scenes, runs, results.json)')
    p.add_argument('--arms', nargs='+', default=list(ARMS), choices=ARMS, help='stage-1 arms, run in this order')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--num-images', type=int, default=200, help='v2 scenes generated (20 %% held out)')
    p.add_argument('--img-size', type=int, default=256)
    p.add_argument('--stage1-epochs', type=int, default=2, help='E1: BYOL / MoCo v2 epochs')
    p.add_argument('--instrument-epochs', type=int, default=6, help='epochs of the instrument classifier')
    p.add_argument(
        '--instrument-scenes',
        type=int,
        default=2000,
        help='train the instrument on the crops of this many separate v2 scenes (generator seed 1, the '
        "yardstick's design; 80 %% for training); 0: on the yardstick scenes' own training split")
    p.add_argument('--stage3-epochs', type=int, default=2, help='E3: ORL stage-3 epochs')
    p.add_argument('--ft-iters', type=int, default=20, help='detection fine-tune iterations')
    p.add_argument(
        '--ratios',
        type=float,
        nargs='*',
        default=[0.05, 0.1, 0.2],
        help="2c's topk_bbox_ratio values of the characterisation (instrument arm, first seed)")
    p.add_argument(
        '--design',
        default='objects=6-10',
        choices=list(premise.DESIGNS),
        help='the second scene design of the characterisation (none: --no-design)')
    p.add_argument('--no-design', action='store_true', help='skip the second-design characterisation')
    p.add_argument('--max-probe-objects', type=int, default=2000, help='cap on the crops of each probe split')
    p.add_argument(
        '--device',
        default='cpu',
        choices=('cpu', 'cuda'),
        help='cuda: the stages run on the visible GPU and the in-process probes too')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='[STAGE:]KEY=VALUE',
        help='extra pipeline overrides for every arm (STAGE=ft: the fine-tunes)')
    p.add_argument(
        '--collect',
        action='store_true',
        help='run nothing: read the finished steps (their markers) and print the table and targets of a '
        'run in progress or cut off; steps not done are listed as pending')
    p.add_argument(
        '--quick',
        action='store_true',
        help='tiny smoke run: 24 images of 128 px, 1 seed, 1 epoch, 32 px views, 2 fine-tune iterations')
    p.add_argument('--verbose', action='store_true', help="stream the stages' output")
    args = p.parse_args(argv)
    if args.quick:
        args.num_images, args.img_size = min(args.num_images, 24), 128
        args.seeds = args.seeds[:1]
        args.stage1_epochs = args.instrument_epochs = args.stage3_epochs = 1
        args.ft_iters = 2
        args.instrument_scenes = min(args.instrument_scenes, 24)
        args.max_probe_objects = min(args.max_probe_objects, 200)
    args.out = osp.realpath(args.out)  # the run commands hold it: one folder, one name (symlinks resolved)
    return args


# ----------------------------------------------------------------------------- options per arm
QUICK_OPTIONS = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'stage1:train_dataloader.batch_size=8',
    '2c:test_dataloader.batch_size=8',
    '2c:test_dataloader.dataset.pipeline.2.size=32',
    'stage3:train_dataloader.batch_size=4',
    *[f'stage3:train_dataloader.dataset.pipeline.1.img_pipelines.{v}.0.scale=32' for v in (0, 1)],
    *[f'stage3:train_dataloader.dataset.pipeline.1.patch_pipelines.{v}.0.size=16' for v in (0, 1)],
    'ft:train_dataloader.batch_size=2',
    'ft:train_dataloader.num_workers=0',
    'ft:train_dataloader.persistent_workers=False',
    'ft:val_dataloader.num_workers=0',
    'ft:val_dataloader.persistent_workers=False',
]


def arm_options(arm: str, seed: int, args: argparse.Namespace, instrument_root: Optional[str] = None) -> List[str]:
    """Pipeline cfg-options of one arm and seed: the seed of both trainings, no in-training probe
    hooks (every backbone is probed after training, the same way), the instrument's own training
    scenes where it has them, the quick sizes, the user's."""
    opts = [f'stage1:randomness.seed={seed}', f'stage3:randomness.seed={seed}']
    if arm == 'instrument' and instrument_root:
        opts += [f'stage1:{split}_dataloader.dataset.data_root={instrument_root}' for split in ('train', 'val', 'test')]
    if arm in SELF_SUPERVISED:
        opts.append('stage1:custom_hooks=[]')
        if args.quick:
            cfg = load_config(config_path(ARM_CONFIGS[arm]['stage1']))
            opts += ['stage1:' + o for o in curve.view_size_options(cfg, 32)]
    if args.quick:
        opts += QUICK_OPTIONS
    return [o for o in opts + args.cfg_options if o.split(':', 1)[0] not in ('ft', 'finetune')]


def ft_options(args: argparse.Namespace) -> List[str]:
    """The detection fine-tunes' cfg-options: the ``ft:`` / ``finetune:`` items (the quick sizes first)."""
    items = (QUICK_OPTIONS if args.quick else []) + args.cfg_options
    return [o.split(':', 1)[1] for o in items if o.split(':', 1)[0] in ('ft', 'finetune')]


def write_recipe(out: str, arm: str) -> str:
    """``OUT/recipes/<arm>/<stage>.py``: tiny configs inheriting the repository's, the pipeline's folder form."""
    folder = osp.join(out, 'recipes', arm)
    os.makedirs(folder, exist_ok=True)
    files = dict(ARM_CONFIGS[arm], **SHARED_CONFIGS)
    for stage, rel in files.items():
        note = f'# {INSTRUMENT_LABEL}\n' if arm == 'instrument' and stage != 'stage3' and stage != 'selective_search' \
            else ''
        text = (f'# mechanism.py recipe of the {arm!r} arm, stage {stage}: the repository config, unchanged.\n{note}'
                f"_base_ = '{config_path(rel)}'\n")
        path = osp.join(folder, f'{stage}.py')
        if not osp.isfile(path) or open(path).read() != text:
            with open(path, 'w') as f:
                f.write(text)
    return folder


# ----------------------------------------------------------------------------- in-process probes
class Prober:
    """Probes any ResNet-18 checkpoint's backbone in the BYOL stage-1 model: object kNN probe
    (held-out crops over training crops) and held-out view retrieval, the stage-1 hooks' figures."""

    def __init__(self, data_root: str, max_objects: int, device: str, view_size: Optional[int]) -> None:
        import copy

        from mmengine.config import Config

        from orl_plugin.engine.hooks.view_retrieval_hook import training_view_pipelines
        from orl_plugin.evaluation.object_probe import object_crops
        from orl_plugin.evaluation.view_retrieval import make_view_pairs
        self.cfg = Config.fromfile(osp.join(repo_root(), PROBE_CONFIG))
        pipelines = copy.deepcopy(training_view_pipelines(self.cfg))
        if view_size:
            for view in pipelines:
                for step in view:
                    if step.get('type') == 'RandomResizedCrop':
                        step['scale'] = view_size
        self.device = device
        self._data: Optional[tuple] = None

        def load() -> tuple:  # on first use: a resumed run that probes nothing does not read the crops
            val = curve._split_infos(data_root, 'val')
            splits = (object_crops(curve._split_infos(data_root, 'train'), 64,
                                   max_objects=max_objects), object_crops(val, 64, max_objects=max_objects))
            return splits, make_view_pairs([i['img_path'] for i in val[:256]], pipelines, seed=0)

        self._load = load

    @property
    def splits(self) -> tuple:
        """(training crops and labels, held-out crops and labels) of the object probe."""
        if self._data is None:
            self._data = self._load()
        return self._data[0]

    @property
    def views(self) -> tuple:
        """The held-out view pairs of view retrieval."""
        if self._data is None:
            self._data = self._load()
        return self._data[1]

    def build(self, seed: int) -> 'torch.nn.Module':
        """The BYOL model as initialised with ``seed`` (mmengine's init_weights)."""
        import torch
        from mmengine.logging import MMLogger
        from mmengine.registry import DefaultScope
        from mmpretrain.registry import MODELS

        import orl_plugin  # noqa: F401  (registers the components)
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel('WARNING')  # init_weights logs a line per parameter
        try:
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                torch.manual_seed(seed)
                model = MODELS.build(self.cfg.model)
                model.init_weights()
        finally:
            logger.setLevel(level)
        return model

    def probe_checkpoint(self, path: str, recalibrate: bool = False) -> Dict[str, float]:
        """The figures of the checkpoint's ``backbone.*`` weights (and BN statistics)."""
        from orl_plugin.evaluation.object_probe import object_knn_probe
        from orl_plugin.evaluation.view_retrieval import view_retrieval
        from orl_plugin.utils.checkpoint import get_state_dict, load_checkpoint_file
        model = self.build(0)
        sd = get_state_dict(load_checkpoint_file(path))
        backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
        if not backbone:
            raise ValueError(f'{path}: no backbone.* weights to probe')
        model.backbone.load_state_dict(backbone, strict=True)
        model.to(self.device)
        out: Dict[str, float] = {}
        for tag in ('', '_bn_recalibrated') if recalibrate else ('', ):
            if tag:
                curve.recalibrate_bn(model, self.splits[0][0])
            obj = object_knn_probe(model, *self.splits)
            view = view_retrieval(model, self.views)
            out.update({
                f'object_probe{tag}': obj['top1'], f'view_retrieval{tag}': view['top1'], f'view_rank{tag}': view['rank']
            })
            out.update(
                object_probe_chance=obj['chance'],
                object_probe_queries=obj['num_query'],
                view_retrieval_chance=view['chance'],
                view_retrieval_images=view['num_images'])
        return out


def save_random_init(prober: Prober, seed: int, path: str) -> str:
    """The seed's random initialisation of the BYOL model as a portable checkpoint (written once)."""
    from orl_plugin.utils.checkpoint import atomic_torch_save
    if not osp.isfile(path):
        model = prober.build(seed)
        atomic_torch_save(dict(state_dict=model.state_dict(), meta=dict(seed=seed, note='random initialisation')), path)
    return path


# ----------------------------------------------------------------------------- the run
class Run:
    """Steps with progress lines, failure records and ``results.json`` (atomic) after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.time()
        self.log = osp.join(args.out, 'pipeline.log')
        self.results_path = osp.join(args.out, 'results.json')
        self.results: Dict[str, Any] = dict(
            setup={},
            data={},
            random_init={},
            arms={},
            byol_matched={},
            characterisation={},
            failures=[],
            step_seconds={})
        self.shared_ss: Dict[str, str] = {}
        self.instrument_root: Optional[str] = None  # --instrument-scenes: the instrument's training scenes
        # the seconds a step took when it ran, kept across resumed invocations (for the cost estimate)
        self.first_seconds: Dict[Tuple[str, str], float] = {}
        if osp.isfile(self.results_path):
            with open(self.results_path) as f:
                previous = json.load(f)
            for step, recs in (previous.get('step_seconds') or {}).items():
                for r in recs:
                    self.first_seconds[r['who'], step] = r.get('first_run_seconds', r['seconds'])
            # 2b does not depend on the arm: a store made by an earlier invocation (another arm) is reused
            ss = (previous.get('data') or {}).get('selective_search')
            if ss and osp.exists(ss.get('store', '')):
                self.shared_ss['selective_search'] = ss['store']
                self.results['data']['selective_search'] = ss

    def say(self, msg: str) -> None:
        """A progress line with the seconds since the start."""
        print(f'[mech {time.time() - self.t0:7.0f} s] {msg}', flush=True)

    def save(self) -> None:
        """Write ``results.json`` (atomically)."""
        self.results['elapsed_s'] = round(time.time() - self.t0, 1)
        atomic_write_json(self.results_path, self.results, indent=2)

    def step(self, who: str, step: str, fn: Callable[[], Any], log: Optional[str] = None) -> Any:
        """Run one step: start/finish lines, a failure as one line (the run goes on), timings."""
        self.say(f'{who} {step}: started')
        t = time.time()
        try:
            value = fn()
        except NotDone as e:
            self.say(f'{who} {step}: not done yet ({e})')
            self.results.setdefault('pending', []).append(dict(who=who, step=step))
            return None
        except Exception as e:  # noqa: BLE001  (any failure: record it, go on with the other arms)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            where = getattr(e, 'log', None) or log or self.log
            self.say(f'{who} {step}: FAILED after {time.time() - t:.0f} s: {first} (log: {where})')
            if self.args.verbose:
                traceback.print_exc()
            self.results['failures'].append(dict(who=who, step=step, error=first, log=where))
            self.save()
            return None
        dt = time.time() - t
        resumed = isinstance(value, dict) and value.get('resumed')
        self.say(f'{who} {step}: finished in {dt:.0f} s' + (' (done before, reused)' if resumed else ''))
        first = self.first_seconds.get((who, step), round(dt, 1)) if resumed else round(dt, 1)
        self.results['step_seconds'].setdefault(step, []).append(
            dict(who=who, seconds=round(dt, 1), resumed=bool(resumed), first_run_seconds=first))
        return value

    def pipeline(self, work_dir: str, recipe: str, to_stage: str, options: List[str], data_root: str,
                 use: Dict[str, str], schedule: Dict[str, int]) -> Dict[str, Any]:
        """One stage through ``orl-pipeline`` (earlier stages skipped by their markers); its record."""
        if self.args.collect:
            return collected(osp.join(work_dir, to_stage, 'pipeline_done.json'))
        opts = PipelineOptions(
            recipe,
            work_dir=work_dir,
            to_stage=to_stage,
            schedule=schedule,
            cfg_options=options,
            data_root=data_root,
            use=use,
            quiet=not self.args.verbose)
        with open(self.log, 'a') as f, contextlib.redirect_stdout(sys.stdout if self.args.verbose else f):
            try:
                rec = Pipeline(opts).run()['stages'][to_stage]
            except Exception as e:
                e.log = osp.join(work_dir, to_stage, 'pipeline_stage.log')  # type: ignore[attr-defined]
                raise
        return dict(rec, resumed=bool(rec.get('skipped')))


class NotDone(RuntimeError):
    """``--collect``: the step has not finished (no marker)."""


def collected(marker: str) -> Dict[str, Any]:
    """``--collect``: a finished step's marker as it is, else :class:`NotDone`."""
    if not osp.isfile(marker):
        raise NotDone(f'no {marker}')
    with open(marker) as f:
        return dict(json.load(f), resumed=True)


COLLECT = False  # set by main() from --collect: marker steps only read


def marker_step(path: str, fn: Callable[[], Dict[str, Any]], source: Optional[str] = None) -> Dict[str, Any]:
    """An in-process step with its own done-marker: the saved result, or ``fn()`` saved. A marker is
    reused only while ``source`` (the checkpoint it measured) is the file it was then: a stage the
    pipeline retrained is probed again, not answered from the old model's marker."""
    if COLLECT:
        rec = collected(path)
        rec.pop('source', None)
        return rec
    ident = transfer.file_identity(source)
    if osp.isfile(path):
        rec = collected(path)
        if rec.pop('source', None) == ident:
            return rec
    value = fn()
    atomic_write_json(path, dict(value, source=ident), indent=2)
    return dict(value, resumed=False)


def _metrics(rec: Optional[dict], prefix: str) -> Dict[str, float]:
    if not rec:
        return {}
    return {k[len(prefix) + 1:]: v for k, v in (rec.get('metrics') or {}).items() if k.startswith(prefix + '/')}


def run_arm(run: Run, arm: str, seed: int, data_root: str, prober: Prober, ft_config: str) -> Dict[str, Any]:
    """Every step of one arm and seed; the figures (missing where a step failed)."""
    args = run.args
    who = f'{arm} seed {seed}'
    work = osp.join(args.out, 'runs', f'{arm}_seed{seed}')
    os.makedirs(work, exist_ok=True)
    recipe = write_recipe(args.out, arm)
    options = arm_options(arm, seed, args, run.instrument_root)
    schedule = {
        'stage1': args.instrument_epochs if arm == 'instrument' else args.stage1_epochs, 'stage3': args.stage3_epochs
    }
    res: Dict[str, Any] = dict(arm=arm, seed=seed, label=INSTRUMENT_LABEL if arm == 'instrument' else arm)
    run.results['arms'].setdefault(arm, {})[str(seed)] = res
    use: Dict[str, str] = {}

    def pipe(stage: str) -> Dict[str, Any]:
        return run.pipeline(work, recipe, stage, options, data_root, dict(use, **run.shared_ss), schedule)

    if arm == 'random':  # the seed's random-init baseline is the arm's stage 1
        base = run.results['random_init'].get(str(seed)) or {}
        ckpt = base.get('checkpoint')
    else:
        rec = run.step(who, 'stage1', lambda: pipe('stage1'))
        ckpt = rec and rec['outputs']['checkpoint']
        if rec:
            res['stage1_train'] = dict(
                wall_s=rec.get('wall_s'), cpu_s=rec.get('cpu_s'), epochs=schedule['stage1'], metrics=rec.get('metrics'))
    if not ckpt:
        return res
    use['stage1'] = ckpt  # the later pipeline calls take it as given (no re-check of stage 1)
    res['stage1_checkpoint'] = ckpt
    probe = base.get('probe') if arm == 'random' else run.step(
        who, 'probe_stage1', lambda: marker_step(
            osp.join(work, 'probe_stage1.done.json'), lambda: prober.probe_checkpoint(ckpt), source=ckpt))
    if probe:
        res['stage1_probe'] = {k: v for k, v in probe.items() if k != 'resumed'}
    run.save()
    knn = run.step(who, 'knn', lambda: pipe('knn'))
    if knn:
        res['knn'] = _metrics(knn, 'knn')
        use['knn'] = knn['outputs']['store']
    if not run.shared_ss:
        ss = run.step('data set', 'selective_search', lambda: pipe('selective_search'))
        if ss:
            run.shared_ss['selective_search'] = ss['outputs']['store']
            run.results['data']['selective_search'] = dict(
                metrics=_metrics(ss, 'selective_search'), store=ss['outputs']['store'], wall_s=ss.get('wall_s'))
    run.save()
    if not knn or not run.shared_ss:
        return res

    def mine_pairs() -> Dict[str, Any]:
        rec = pipe('correspondence')
        return dict(rec, stage3_images=transfer.orl_kept_images(rec['outputs']['store']))

    corr = run.step(who, 'correspondence', mine_pairs)
    if not corr:
        return res
    res['correspondence'] = _metrics(corr, 'correspondence')
    use['correspondence'] = corr['outputs']['store']
    res['stage3_images'] = corr['stage3_images']
    run.save()
    s3 = run.step(who, 'stage3', lambda: pipe('stage3'))
    if s3:
        ck3 = s3['outputs']['checkpoint']
        res['stage3_checkpoint'] = ck3
        res['stage3_train'] = dict(wall_s=s3.get('wall_s'), cpu_s=s3.get('cpu_s'), epochs=args.stage3_epochs)
        p3 = run.step(
            who, 'probe_stage3', lambda: marker_step(
                osp.join(work, 'probe_stage3.done.json'), lambda: prober.probe_checkpoint(ck3), source=ck3))
        if p3:
            res['stage3_probe'] = {k: v for k, v in p3.items() if k != 'resumed'}
    run.save()
    for what, src in (('stage3', res.get('stage3_checkpoint')), ('stage1', ckpt)):
        if src:
            ft = run.step(
                who,
                f'finetune_{what}',
                lambda src=src, what=what: finetune(run, ft_config, src, osp.join(work, f'finetune_{what}'), seed,
                                                    data_root))
            if ft:
                res[f'finetune_{what}'] = ft['metrics']
        run.save()
    return res


def random_baseline(run: Run, seed: int, prober: Prober) -> None:
    """The seed's random initialisation of the BYOL model (a portable checkpoint) probed as
    initialised and with BN statistics recalibrated on the data: every arm's stage-1 baseline."""
    who = f'random seed {seed}'
    work = osp.join(run.args.out, 'runs', f'random_seed{seed}')
    os.makedirs(work, exist_ok=True)
    path = osp.join(work, 'random_init.pth')

    def make() -> Dict[str, Any]:
        if run.args.collect and not osp.isfile(path):
            raise NotDone(f'no {path}')
        return dict(resumed=osp.isfile(path), checkpoint=save_random_init(prober, seed, path))

    made = run.step(who, 'stage1', make)
    if not made:
        return
    probe = run.step(
        who, 'probe_stage1', lambda: marker_step(
            osp.join(work, 'probe_stage1.done.json'),
            lambda: prober.probe_checkpoint(path, recalibrate=True),
            source=path))
    run.results['random_init'][str(seed)] = dict(
        checkpoint=path, probe=probe and {k: v for k, v in probe.items() if k != 'resumed'})
    run.save()


def finetune(run: Run, config: str, pretrained: str, work_dir: str, seed: int, data_root: str) -> Dict[str, Any]:
    """``synthetic_transfer.finetune`` (its done-marker), the bbox mAPs of the end."""
    rec = collected(osp.join(work_dir, transfer.DONE)) if run.args.collect else transfer.finetune(
        config, pretrained, work_dir, seed, run.args.ft_iters, data_root, ft_options(run.args), run.args.verbose)
    m = rec['metrics']
    return dict(
        metrics={k: m.get(f'val/coco/{k}') for k in ('bbox_mAP', 'bbox_mAP_50')},
        resumed=bool(rec.get('resumed')),
        wall_s=rec.get('wall_s'))


def run_byol_matched(run: Run, seed: int, epochs: int, data_root: str, prober: Prober,
                     ft_config: str) -> Dict[str, Any]:
    """BYOL trained for ``epochs`` (ORL's matched budget): probe and fine-tune."""
    who = f'byol-matched ({epochs} ep) seed {seed}'
    work = osp.join(run.args.out, 'runs', f'byol-matched-e{epochs}_seed{seed}')
    res: Dict[str, Any] = dict(epochs=epochs, seed=seed)
    rec = run.step(
        who, 'stage1', lambda: run.pipeline(work, write_recipe(run.args.out, 'byol'), 'stage1',
                                            arm_options('byol', seed, run.args), data_root, {}, {'stage1': epochs}))
    if not rec:
        return res
    ckpt = rec['outputs']['checkpoint']
    res['train'] = dict(wall_s=rec.get('wall_s'), cpu_s=rec.get('cpu_s'))
    probe = run.step(
        who, 'probe_stage1', lambda: marker_step(
            osp.join(work, 'probe_stage1.done.json'), lambda: prober.probe_checkpoint(ckpt), source=ckpt))
    if probe:
        res['probe'] = {k: v for k, v in probe.items() if k != 'resumed'}
    ft = run.step(who, 'finetune_stage1',
                  lambda: finetune(run, ft_config, ckpt, osp.join(work, 'finetune_stage1'), seed, data_root))
    if ft:
        res['finetune'] = ft['metrics']
    return res


def characterise(run: Run, data_root: str) -> None:
    """Informative: the instrument arm's 2c object-pair rates across ``topk_bbox_ratio``, and its
    2a-2c on a second scene design."""
    args = run.args
    inst = run.results['arms'].get('instrument', {}).get(str(args.seeds[0]), {})
    ckpt = inst.get('stage1_checkpoint')
    base_work = osp.join(args.out, 'runs', f'instrument_seed{args.seeds[0]}')
    knn_store = osp.join(base_work, 'knn', 'knn.orlstore')
    if not ckpt or not osp.exists(knn_store) or not run.shared_ss:
        run.say('characterisation: skipped (the instrument arm has no stage-1 checkpoint / 2a / 2b output)')
        return
    recipe = write_recipe(args.out, 'instrument')
    options = arm_options('instrument', args.seeds[0], args)
    default_ratio = float(
        load_config(config_path(ARM_CONFIGS['instrument']['correspondence']))['test_cfg']['topk_bbox_ratio'])
    out = run.results['characterisation']
    out['ratios'] = {}
    for r in args.ratios:
        if abs(r - default_ratio) < 1e-9 and inst.get('correspondence'):
            out['ratios'][f'{r:g}'] = dict(inst['correspondence'], default=True)
            continue
        rec = run.step(
            'instrument characterisation',
            f'correspondence ratio={r:g}',
            lambda r=r: run.pipeline(
                osp.join(args.out, 'characterise', f'ratio_{r:g}'), recipe, 'correspondence', options + [
                    f'correspondence:test_cfg.topk_bbox_ratio={r}'
                ], data_root, dict(stage1=ckpt, knn=knn_store, **run.shared_ss), {}))
        if rec:
            out['ratios'][f'{r:g}'] = _metrics(rec, 'correspondence')
        run.save()
    if args.no_design:
        return
    root = osp.join(args.out, 'scenes_' + args.design.replace('/', '_per_').replace('=', '_'))
    if args.collect and not osp.isdir(root):
        run.say(f'characterisation on {args.design}: not started')
        return
    ensure_scenes(root, args.num_images, args.img_size, premise.DESIGNS[args.design])
    work = osp.join(args.out, 'characterise', 'design_' + osp.basename(root)[len('scenes_'):])
    d: Dict[str, Any] = dict(design=args.design, options=premise.DESIGNS[args.design])
    out['design'] = d
    for stage, prefix in (('knn', 'knn'), ('selective_search', 'selective_search'), ('correspondence',
                                                                                     'correspondence')):
        rec = run.step(
            f'instrument on {args.design}',
            stage,
            lambda stage=stage: run.pipeline(work, recipe, stage, options, root, dict(stage1=ckpt), {}))
        if not rec:
            break
        d[stage] = _metrics(rec, prefix)
        run.save()


def ensure_scenes(root: str, num_images: int, img_size: int, options: Dict[str, Any], seed: int = 0) -> Dict[str, int]:
    """The v2 scenes (``make_synthetic_scenes``, seed 0 unless given) under ``root``, generated once."""
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
    if not osp.isfile(osp.join(root, 'annotations', 'instances_val.json')):
        make_synthetic_scenes(
            root, num_images=num_images, seed=seed, img_size=(img_size, img_size), workers=1, **options)
    counts = {}
    for split in ('train', 'val'):
        with open(osp.join(root, 'annotations', f'instances_{split}.json')) as f:
            counts[split] = len(json.load(f)['images'])
    return counts


# ----------------------------------------------------------------------------- summary and targets
def summarise(values: List[Optional[float]]) -> Optional[Dict[str, Any]]:
    """Mean, sample std, count and values of the numbers among ``values`` (None, NaN left out); None if none."""
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(float(v))]
    if not vals:
        return None
    return dict(
        mean=statistics.fmean(vals), std=statistics.stdev(vals) if len(vals) > 1 else 0.0, n=len(vals), values=vals)


def _get(rec: Dict[str, Any], path: str) -> Optional[float]:
    node: Any = rec
    for part in path.split('/'):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) else None


#: Table figures: (key, path in an arm's per-seed record).
FIGURES: Tuple[Tuple[str, str], ...] = (
    ('stage1_object_probe', 'stage1_probe/object_probe'),
    ('stage1_view_retrieval', 'stage1_probe/view_retrieval'),
    ('object_probe_chance', 'stage1_probe/object_probe_chance'),
    ('object_probe_queries', 'stage1_probe/object_probe_queries'),
    ('view_retrieval_images', 'stage1_probe/view_retrieval_images'),
    ('view_retrieval_chance', 'stage1_probe/view_retrieval_chance'),
    ('knn_precision', 'knn/category_precision@10'),
    ('knn_precision_random', 'knn/category_precision_random'),
    *[(f'{k}{s}{r}', f'correspondence/{k}{s}{r}') for k in CORR_KEYS for s in ('', '_inside') for r in ('', '_random')],
    ('stage3_object_probe', 'stage3_probe/object_probe'),
    ('stage3_view_retrieval', 'stage3_probe/view_retrieval'),
    ('stage3_det_mAP', 'finetune_stage3/bbox_mAP'),
    ('stage3_det_mAP50', 'finetune_stage3/bbox_mAP_50'),
    ('stage1_det_mAP', 'finetune_stage1/bbox_mAP'),
    ('stage1_det_mAP50', 'finetune_stage1/bbox_mAP_50'),
)


def build_table(results: Dict[str, Any]) -> Dict[str, Any]:
    """Mean/std over seeds of every figure of every arm, and of the matched BYOL runs."""
    table: Dict[str, Any] = {}
    for arm, seeds in results['arms'].items():
        table[arm] = {k: summarise([_get(r, p) for r in seeds.values()]) for k, p in FIGURES}
    base = list(results['random_init'].values())
    table['random_init'] = {
        k: summarise([_get(r, f'probe/{k}') for r in base])
        for k in ('object_probe', 'object_probe_bn_recalibrated', 'view_retrieval', 'view_retrieval_bn_recalibrated',
                  'object_probe_chance', 'object_probe_queries', 'view_retrieval_images')
    }
    byol = list(results['byol_matched'].values())
    table['byol_matched'] = dict(
        object_probe=summarise([_get(r, 'probe/object_probe') for r in byol]),
        view_retrieval=summarise([_get(r, 'probe/view_retrieval') for r in byol]),
        det_mAP=summarise([_get(r, 'finetune/bbox_mAP') for r in byol]),
        det_mAP50=summarise([_get(r, 'finetune/bbox_mAP_50') for r in byol]),
        epochs=sorted({r['epochs'] for r in byol}))
    return table


def _mean(s: Optional[Dict[str, Any]]) -> Optional[float]:
    return None if s is None else s['mean']


def _target(name: str, kind: str, passed: Optional[bool], measured: str) -> Dict[str, Any]:
    return dict(name=name, kind=kind, passed=passed, measured=measured)


def _two_std_apart(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> Tuple[Optional[bool], str]:
    """ORL (a) >= BYOL (b) with the means at least 2 pooled standard deviations apart (needs 2+ seeds each)."""
    if a is None or b is None:
        return None, 'not measured'
    pooled = math.sqrt((a['std']**2 + b['std']**2) / 2)
    text = f"{a['mean']:.4f} ± {a['std']:.4f} vs {b['mean']:.4f} ± {b['std']:.4f} (n = {a['n']}, {b['n']})"
    if a['n'] < 2 or b['n'] < 2:
        return None, text + '; needs >= 2 seeds for a spread'
    diff = a['mean'] - b['mean']
    return diff >= 2 * pooled, text + f'; difference {diff:+.4f}, 2 std {2 * pooled:.4f}'


def evaluate_targets(table: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The yardstick's targets, each PASS (True) / FAIL (False) / not measurable (None), from the table."""
    out: List[Dict[str, Any]] = []
    inst = table.get('instrument', {})
    for crit, s in (('IoU >= 0.5', ''), ('inside >= 0.5', '_inside')):
        v, r = _mean(inst.get(f'pair_precision_on_objects{s}')), _mean(inst.get(f'pair_precision_on_objects{s}_random'))
        ok = None if v is None or r is None else (v >= 0.9 and v >= 3 * r)
        out.append(
            _target(
                f'mining correct: instrument same-category share of object pairs ({crit}) >= 0.9 and '
                '>= 3x random', 'primary', ok,
                '-' if ok is None else f'{v:.3f} vs random {r:.3f} ({v / r if r else float("inf"):.1f}x)'))
    v, r = _mean(inst.get('knn_precision')), _mean(inst.get('knn_precision_random'))
    ok = None if v is None or r is None else v >= r + 0.15
    out.append(
        _target('premise: instrument KNN category precision@10 >= random neighbour + 0.15', 'primary', ok,
                '-' if ok is None else f'{v:.3f} vs random {r:.3f} ({v - r:+.3f})'))
    byol = table.get('byol_matched', {})
    for fig, key_a, key_b in (('object probe', 'stage3_object_probe', 'object_probe'), ('detection bbox mAP',
                                                                                        'stage3_det_mAP', 'det_mAP')):
        ok, text = _two_std_apart(inst.get(key_a), byol.get(key_b))
        out.append(
            _target(f'stage 3 on instrument pairs >= BYOL at matched compute, means 2 std apart ({fig})', 'primary', ok,
                    text))
    rnd = table.get('random_init', {})
    best: Tuple[Optional[bool], str] = (None, 'no self-supervised arm measured')
    for arm in SELF_SUPERVISED:
        a = table.get(arm)
        if not a or rnd.get('object_probe_bn_recalibrated') is None:
            continue
        knn, knn_r = _mean(a.get('knn_precision')), _mean(a.get('knn_precision_random'))
        knn_ok = knn is not None and knn_r is not None and knn >= knn_r + 0.10
        parts, any_probe = [], False
        for fig, n_key in (('object_probe', 'object_probe_queries'), ('view_retrieval', 'view_retrieval_images')):
            v, base = _mean(a.get(f'stage1_{fig}')), _mean(rnd.get(f'{fig}_bn_recalibrated'))
            n = _mean(rnd.get(n_key))
            if v is None or base is None or not n:
                continue
            se = math.sqrt(max(base * (1 - base), 1e-12) / n)
            z = (v - base) / se
            any_probe |= z >= 3
            parts.append(f'{fig} {v:.3f} vs BN-recalibrated random {base:.3f} ({z:+.1f} SE)')
        text = f"{arm}: {'; '.join(parts)}; KNN {knn if knn is not None else float('nan'):.3f} vs random " \
               f"{knn_r if knn_r is not None else float('nan'):.3f}"
        ok = any_probe and knn_ok
        if best[0] is not True:
            best = (ok, text if best[0] is None else best[1] + ' | ' + text)
    out.append(
        _target(
            'stage 1: a self-supervised arm >= 3 SE above the BN-recalibrated random init on the object '
            'probe or view retrieval, with KNN >= random + 0.10', 'secondary', *best))
    return out


def _fmt(s: Optional[Dict[str, Any]], digits: int = 3) -> str:
    if s is None:
        return '-'
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s['n'] > 1 else '')


def _pair(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]], digits: int = 3) -> str:
    return f'{_fmt(a, digits)} ({_fmt(b, digits)})'


def markdown(results: Dict[str, Any]) -> str:
    """``results.md``: the table, the chance levels, the targets, the characterisation, pending and failed steps."""
    t, setup = results['table'], results['setup']
    ss = (results['data'].get('selective_search') or {}).get('metrics', {})
    lines = [
        f"# Mechanism yardstick ({setup['images']['train']} train / {setup['images']['val']} val v2 scenes of "
        f"{setup['img_size']} px; seeds {setup['seeds']}; E1 = {setup['stage1_epochs']}, instrument "
        f"{setup['instrument_epochs']} ep, E3 = {setup['stage3_epochs']}, fine-tune {setup['ft_iters']} it)", '',
        'Each cell: mean ± std over seeds; in brackets the chance level / baseline beside it. `instrument` is a '
        f'{INSTRUMENT_LABEL}.', '',
        '| arm | stage-1 object probe (random init as-init / BN-recal.) | view retrieval (BN-recal. random) | '
        '2a KNN P@10 (random) | 2c pair precision (random) | obj-pair rate IoU (random) | obj-pair rate inside '
        '(random) | same-cat of obj-pairs IoU (random) | same-cat of obj-pairs inside (random) | stage-3 object '
        'probe | stage-3 det mAP | stage-1 alone det mAP |', '|' + '---|' * 12
    ]
    rnd = t.get('random_init', {})
    for arm in ARMS:
        a = t.get(arm)
        if a is None:
            continue
        probe = f"{_fmt(a['stage1_object_probe'])} ({_fmt(rnd.get('object_probe'))} / " \
                f"{_fmt(rnd.get('object_probe_bn_recalibrated'))})"
        cells = [
            arm + (' (instrument, not ORL)' if arm == 'instrument' else ''), probe,
            _pair(a['stage1_view_retrieval'], rnd.get('view_retrieval_bn_recalibrated')),
            _pair(a['knn_precision'], a['knn_precision_random']),
            _pair(a['pair_precision'], a['pair_precision_random'], 4),
            _pair(a['pair_object_rate'], a['pair_object_rate_random']),
            _pair(a['pair_object_rate_inside'], a['pair_object_rate_inside_random']),
            _pair(a['pair_precision_on_objects'], a['pair_precision_on_objects_random']),
            _pair(a['pair_precision_on_objects_inside'], a['pair_precision_on_objects_inside_random']),
            _fmt(a['stage3_object_probe']),
            _fmt(a['stage3_det_mAP'], 4),
            _fmt(a['stage1_det_mAP'], 4)
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    b = t.get('byol_matched', {})
    lines.append(f"| BYOL matched compute ({', '.join(map(str, b.get('epochs') or [])) or '-'} ep) | "
                 f"{_fmt(b.get('object_probe'))} | {_fmt(b.get('view_retrieval'))} | | | | | | | "
                 f"{_fmt(b.get('object_probe'))} | {_fmt(b.get('det_mAP'), 4)} | |")
    chance = rnd.get('object_probe_chance')
    lines += [
        '', f"Object probe chance (most common class): {_fmt(chance)}; 2b proposal recall@0.5: raw "
        f"{ss.get('recall@0.5_raw', float('nan')):.3f} "
        f"(random boxes {ss.get('recall@0.5_raw_random', float('nan')):.3f}), "
        f"kept {ss.get('recall@0.5_filtered', float('nan')):.3f} "
        f"(random {ss.get('recall@0.5_filtered_random', float('nan')):.3f}), "
        f"{ss.get('mean_filtered_boxes', float('nan')):.1f} kept boxes per image.", '', '## Targets', ''
    ]
    for tg in results['targets']:
        verdict = {True: 'PASS', False: 'FAIL', None: 'NOT MEASURED'}[tg['passed']]
        lines.append(f"- **{verdict}** ({tg['kind']}) {tg['name']}: {tg['measured']}")
    ch = results.get('characterisation') or {}
    if ch.get('ratios') or ch.get('design'):
        lines += [
            '', '## Characterisation (instrument arm, informative)', '',
            '| setting | pair precision (random) | obj-pair rate IoU (random) | obj-pair rate inside (random) | '
            'same-cat of obj-pairs IoU (random) | same-cat of obj-pairs inside (random) | KNN P@10 (random) |',
            '|---|---|---|---|---|---|---|'
        ]

        def row(name: str, c: Dict[str, Any], knn: Optional[Dict[str, Any]] = None) -> str:
            f = lambda k: c.get(k, float('nan'))  # noqa: E731
            knn_cell = f"{knn['category_precision@10']:.3f} ({knn['category_precision_random']:.3f})" if knn else ''
            return (f"| {name} | {f('pair_precision'):.4f} ({f('pair_precision_random'):.4f}) | "
                    f"{f('pair_object_rate'):.3f} ({f('pair_object_rate_random'):.3f}) | "
                    f"{f('pair_object_rate_inside'):.3f} ({f('pair_object_rate_inside_random'):.3f}) | "
                    f"{f('pair_precision_on_objects'):.3f} ({f('pair_precision_on_objects_random'):.3f}) | "
                    f"{f('pair_precision_on_objects_inside'):.3f} ({f('pair_precision_on_objects_inside_random'):.3f}) "
                    f"| {knn_cell} |")

        for r, c in (ch.get('ratios') or {}).items():
            lines.append(row(f'topk_bbox_ratio={r}', c))
        d = ch.get('design') or {}
        if d.get('correspondence'):
            lines.append(row(f"scenes {d['design']} (ratio default)", d['correspondence'], d.get('knn')))
    if results.get('pending'):
        lines += ['', '## Pending steps (--collect: not finished yet)', '']
        lines += [f"- {p['who']} {p['step']}" for p in results['pending']]
    if results['failures']:
        lines += ['', '## Failed steps', ''
                  ] + [f"- {f['who']} {f['step']}: {f['error']} (log: {f['log']})" for f in results['failures']]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run (or, with ``--collect``, read) every step; write and print the results."""
    global COLLECT
    args = parse_args(argv)
    COLLECT = args.collect
    os.makedirs(args.out, exist_ok=True)
    run = Run(args)
    data_root = osp.join(args.out, 'scenes')
    counts = ensure_scenes(data_root, args.num_images, args.img_size, {})
    instrument_scenes = None
    if args.instrument_scenes and 'instrument' in args.arms:
        # Its own scenes (another generator stream, the same design): the instrument's crops are
        # then not the crops it is measured on, and it can see more of them than the yardstick has.
        run.instrument_root = osp.join(args.out, f'instrument_scenes_{args.instrument_scenes}')
        instrument_scenes = dict(
            data_root=run.instrument_root,
            seed=1,
            images=ensure_scenes(run.instrument_root, args.instrument_scenes, args.img_size, {}, seed=1))
    _, preset = resolve_configs('synthetic')
    ratio = transfer.compute_ratio({s: config_path(c) for s, c in dict(_BYOL, **SHARED_CONFIGS).items()})
    run.results['setup'] = dict(
        data_root=data_root,
        images=counts,
        img_size=args.img_size,
        seeds=args.seeds,
        arms=args.arms,
        stage1_epochs=args.stage1_epochs,
        instrument_epochs=args.instrument_epochs,
        instrument_scenes=instrument_scenes,
        stage3_epochs=args.stage3_epochs,
        ft_iters=args.ft_iters,
        quick=args.quick,
        device=args.device,
        cfg_options=args.cfg_options,
        pixel_ratio=ratio,
        arm_configs={a: ARM_CONFIGS[a] for a in args.arms},
        shared_configs=SHARED_CONFIGS,
        finetune_config=preset['finetune'],
        instrument=INSTRUMENT_LABEL)
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # the stages' processes too
    prober = Prober(data_root, args.max_probe_objects, args.device, 32 if args.quick else None)
    order = list(dict.fromkeys(args.arms))  # as given: the first arm to reach 2b runs it for all
    for seed in args.seeds:
        random_baseline(run, seed, prober)
        for arm in order:
            run_arm(run, arm, seed, data_root, prober, preset['finetune'])
        # BYOL at ORL's matched compute: E1 + E3 * r * N3 / N epochs, per arm's N3 (runs shared by epoch count)
        epochs = set()
        for arm in order:
            n3 = run.results['arms'][arm][str(seed)].get('stage3_images')
            if n3 is not None and run.results['arms'][arm][str(seed)].get('stage3_checkpoint'):
                e = max(1, round(args.stage1_epochs + args.stage3_epochs * ratio['ratio'] * n3 / counts['train']))
                run.results['arms'][arm][str(seed)]['byol_matched_epochs'] = e
                epochs.add(e)
        for e in sorted(epochs):
            run.results['byol_matched'][f'e{e}_seed{seed}'] = run_byol_matched(run, seed, e, data_root, prober,
                                                                               preset['finetune'])
            run.save()
    if 'instrument' in args.arms:
        characterise(run, data_root)
    run.results['table'] = build_table(run.results)
    run.results['targets'] = evaluate_targets(run.results['table'])
    run.save()
    md = markdown(run.results)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(md + '\n')
    print(md)
    run.say(f'results: {run.results_path}; stage logs: {run.log}')
    return 0
