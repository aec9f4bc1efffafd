"""The one-command ORL pipeline: stage 1 -> 2a/2b/2c -> stage 3 (-> detection fine-tune).

Every stage is launched exactly as a user would launch it by hand: a subprocess of
``tools/train.py`` / ``tools/test.py`` / ``tools/det_train.py`` (or ``tools/dist_train.sh`` /
``tools/dist_test.sh`` with ``--gpus N``, or ``tools/slurm_*.sh`` with ``--launcher slurm``) on the
stage's own config, with the previous stages' outputs passed in through ``--cfg-options``:

==================  =========  ======================================  =====================================
stage (aliases)     entry      consumes                                 produces
==================  =========  ======================================  =====================================
stage1 (1)          train      -                                        latest checkpoint
knn (2a)            test       stage-1 checkpoint (CHECKPOINT arg)      ``knn.orlstore``
selective_search    test       -                                        ``selective_search.orlstore``
(2b, ss)
correspondence (2c) test       stage-1 checkpoint, 2a + 2b stores       ``correspondence.orlstore``
stage3 (3)          train      2c store                                 latest checkpoint
finetune (ft)       det_train  stage-3 checkpoint (``--pretrained``)    latest checkpoint + bbox mAP
==================  =========  ======================================  =====================================

Each stage runs in ``<work_dir>/<stage>/``. When it succeeds the pipeline writes
``<work_dir>/<stage>/pipeline_done.json`` atomically (outputs, log, metrics, command, fingerprint).
A later run skips a stage whose marker is present, whose outputs still exist and whose fingerprint
(config file content, cfg-options, inputs and the run ids of the upstream stages) is unchanged, so a
crashed pipeline resumes where it stopped; a crashed *training* stage resumes from its last
checkpoint (``--resume``), a crashed mining stage from its chunk cache. Re-running an upstream stage
gives it a new run id, which makes every stage downstream of it stale. ``--from STAGE`` forces STAGE
and every stage that consumes its output (directly or not) to run again from scratch.

Also: ``--schedule STAGE=N`` (train a stage for N epochs/iterations, LR schedule rescaled),
``--use STAGE=PATH`` (an output made elsewhere, e.g. an official ORL JSON, instead of running the
stage), ``--data-root DIR`` (every stage on another copy of the data), per-stage ``--cfg-options``.
After each stage the pipeline prints its outputs, its runner log and the figures its evaluator
returned (read from the runner's json logs); ``<work_dir>/pipeline_summary.json`` collects them.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import os.path as osp
import resource
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

DONE_MARKER = 'pipeline_done.json'
STARTED_MARKER = 'pipeline_started.json'
SUMMARY_FILE = 'pipeline_summary.json'


class PipelineError(RuntimeError):
    """A stage failed, or the pipeline was set up wrongly (missing config, unknown stage...)."""


@dataclass(frozen=True)
class StageSpec:
    """One node of the stage graph.

    Attributes:
        name: canonical name, also the sub-folder of the work dir.
        entry: ``'train'`` (tools/train.py), ``'test'`` (tools/test.py) or ``'det_train'``
            (tools/det_train.py, the mmdet fine-tune).
        config_file: the file name this stage's config has in a config directory.
        deps: stages whose outputs this stage consumes.
        aliases: other names accepted by ``--from`` / ``--to`` / per-stage ``--cfg-options``.
        optional: only run when asked (the detection fine-tune, ``--finetune``).
    """

    name: str
    entry: str
    config_file: str
    deps: Tuple[str, ...]
    aliases: Tuple[str, ...] = ()
    optional: bool = False
    title: str = ''


STAGES: Tuple[StageSpec, ...] = (
    StageSpec('stage1', 'train', 'stage1.py', (), ('1', 'byol'), title='stage 1: image-level BYOL'),
    StageSpec('knn', 'test', 'knn.py', ('stage1',), ('2a',), title='stage 2a: KNN image retrieval'),
    StageSpec('selective_search', 'test', 'selective_search.py', (), ('2b', 'ss'),
              title='stage 2b: selective search'),
    StageSpec('correspondence', 'test', 'correspondence.py', ('stage1', 'knn', 'selective_search'),
              ('2c', 'corr'), title='stage 2c: RoI pair retrieval'),
    StageSpec('stage3', 'train', 'stage3.py', ('correspondence',), ('3', 'orl'),
              title='stage 3: object-level pre-training'),
    StageSpec('finetune', 'det_train', 'finetune.py', ('stage3',), ('ft', 'det'), optional=True,
              title='detection fine-tune'),
)
STAGE_BY_NAME: Dict[str, StageSpec] = {s.name: s for s in STAGES}

# Where each stage's inputs/outputs go in its config (the keys --cfg-options sets). They follow the
# shipped configs: the mining evaluators write ``out_file``; 2c reads the proposals through its
# ProposalDataset and the neighbours through its loop; the stage-3 ORLDataset reads the correspondence
# store. The detection fine-tune takes the stage-3 checkpoint through tools/det_train.py --pretrained,
# which points every ``Pretrained`` init_cfg of the detector at it (backbone, and a C4 shared head).
STORE_OUT_KEY = 'test_evaluator.out_file'
CORR_SS_KEY = 'test_dataloader.dataset.proposal_file'
CORR_KNN_KEY = 'test_cfg.knn_file'
STAGE3_CORR_KEY = 'train_dataloader.dataset.correspondence_file'

STORE_NAMES = {
    'knn': 'knn.orlstore',
    'selective_search': 'selective_search.orlstore',
    'correspondence': 'correspondence.orlstore',
}

# Presets: config file per stage, relative to the repository root. Globs must match exactly one file.
PRESETS: Dict[str, Dict[str, str]] = {
    'synthetic': {
        'stage1': 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py',
        'knn': 'configs/orl/stage2/knn_byol-resnet18_1xb64_synthetic.py',
        'selective_search': 'configs/orl/stage2/selective-search_synthetic.py',
        'correspondence': 'configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py',
        'stage3': 'configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py',
        'finetune': 'configs/benchmarks/mmdetection/synthetic/faster-rcnn_r18_fpn_1xb8-*_synthetic.py',
    },
    'coco': {
        'stage1': 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py',
        'knn': 'configs/orl/stage2/knn_byol-resnet50_8xb64_coco.py',
        'selective_search': 'configs/orl/stage2/selective-search_coco.py',
        'correspondence': 'configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco.py',
        'stage3': 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py',
        'finetune': 'configs/benchmarks/mmdetection/coco/mask-rcnn_r50-syncbn-4conv1fc_fpn_1x_coco_orl.py',
    },
    'coco-plus': {
        'stage1': 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco-plus.py',
        'knn': 'configs/orl/stage2/knn_byol-resnet50_8xb64_coco-plus.py',
        'selective_search': 'configs/orl/stage2/selective-search_coco-plus.py',
        'correspondence': 'configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco-plus.py',
        'stage3': 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco-plus.py',
        # Transfer is always evaluated on COCO (train2017 -> val2017), whatever the pre-training set.
        'finetune': 'configs/benchmarks/mmdetection/coco/mask-rcnn_r50-syncbn-4conv1fc_fpn_1x_coco_orl.py',
    },
}


def repo_root() -> str:
    """Where configs/ and tools/ are: the checkout, or a wheel install's ``orl_plugin/.mim``."""
    from .mim_files import files_root
    return files_root()


def resolve_stage(name: str) -> str:
    """Canonical stage name for a name or alias (``2a`` -> ``knn``)."""
    key = name.strip().lower().replace('-', '_')
    for spec in STAGES:
        if key == spec.name or key in spec.aliases:
            return spec.name
    valid = ', '.join(f"{s.name} ({'/'.join(s.aliases)})" for s in STAGES)
    raise PipelineError(f'unknown stage {name!r}; stages are: {valid}')


def descendants(stage: str) -> List[str]:
    """``stage`` and every stage that consumes its output, directly or not, in pipeline order."""
    out = {stage}
    for spec in STAGES:  # STAGES is topologically ordered
        if any(d in out for d in spec.deps):
            out.add(spec.name)
    return [s.name for s in STAGES if s.name in out]


def resolve_configs(preset_or_dir: str, root: Optional[str] = None) -> Tuple[str, Dict[str, str]]:
    """Map each stage to a config file, from a preset name or a directory of stage configs.

    Returns ``(label, {stage: absolute config path})``. A stage with no config is absent (only
    allowed for ``finetune``; the caller checks).
    """
    root = root or repo_root()
    if preset_or_dir in PRESETS:
        configs = {}
        for stage, pattern in PRESETS[preset_or_dir].items():
            matches = sorted(glob.glob(osp.join(root, pattern)))
            if len(matches) == 1:
                configs[stage] = matches[0]
            elif len(matches) > 1:
                raise PipelineError(f'preset {preset_or_dir!r}: pattern {pattern!r} for stage {stage} '
                                    f'matches several configs: {matches}')
        return preset_or_dir, configs
    if osp.isdir(preset_or_dir):
        configs = {}
        for spec in STAGES:
            path = osp.join(preset_or_dir, spec.config_file)
            if osp.isfile(path):
                configs[spec.name] = osp.abspath(path)
        label = osp.basename(osp.normpath(preset_or_dir))
        return label, configs
    raise PipelineError(f'{preset_or_dir!r} is neither a preset ({", ".join(PRESETS)}) nor a directory '
                        f'holding {", ".join(s.config_file for s in STAGES)}')


def parse_stage_options(items: Sequence[str]) -> Dict[str, List[str]]:
    """Split ``[STAGE:]key=value`` items into per-stage option lists (key ``'*'``: every stage)."""
    out: Dict[str, List[str]] = {'*': []}
    for item in items:
        if '=' not in item:
            raise PipelineError(f'--cfg-options item {item!r} is not [STAGE:]key=value')
        head, _, _ = item.partition('=')
        if ':' in head:
            stage, _, rest = item.partition(':')
            out.setdefault(resolve_stage(stage), []).append(rest)
        else:
            out['*'].append(item)
    return out


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temp file in the same folder + os.replace."""
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _file_sha(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine's CheckpointHook saved last in ``work_dir``.

    Reads the ``last_checkpoint`` file the hook writes; falls back to the highest-numbered
    ``epoch_*.pth`` / ``iter_*.pth``.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            path = f.read().strip()
        if path and not osp.isabs(path):
            path = osp.join(work_dir, path)
        if path and osp.isfile(path):
            return path
    best: Tuple[int, int, str] = (-1, -1, '')
    for rank, pattern in ((1, 'iter_*.pth'), (0, 'epoch_*.pth')):
        for path in glob.glob(osp.join(work_dir, pattern)):
            stem = osp.basename(path)[:-4].split('_', 1)[1]
            if stem.isdigit():
                best = max(best, (rank, int(stem), path))
    return best[2] or None


def _timestamp_dirs(work_dir: str) -> List[str]:
    """Runner log dirs (``<work_dir>/<YYYYmmdd_HHMMSS>/``), oldest first."""
    dirs = [d for d in glob.glob(osp.join(work_dir, '[0-9]' * 8 + '_' + '[0-9]' * 6)) if osp.isdir(d)]
    return sorted(dirs)


def _numeric_items(d: dict, skip: Sequence[str] = ()) -> Dict[str, float]:
    return {k: v for k, v in d.items()
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_run_metrics(log_dir: str) -> Dict[str, Any]:
    """Quality figures of one runner run from its json logs.

    * ``<log_dir>/<ts>.json`` (written by LoggerHook after ``Runner.test()``): the evaluator's metrics.
    * ``<log_dir>/vis_data/scalars.json`` (one json per line): the last training line's losses
      (``train/loss*``) and the latest value of every other scalar (``val/<name>``: validation
      metrics, probe hooks).
    """
    out: Dict[str, Any] = {}
    ts = osp.basename(log_dir)
    test_json = _read_json(osp.join(log_dir, f'{ts}.json'))
    if isinstance(test_json, dict):
        out.update(_numeric_items(test_json, skip=('time', 'data_time', 'step', 'epoch', 'iter')))
    scalars = osp.join(log_dir, 'vis_data', 'scalars.json')
    if osp.isfile(scalars):
        last_train: dict = {}
        last_val: dict = {}
        with open(scalars) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if 'lr' in rec or any(k.startswith('loss') for k in rec):
                    last_train = rec
                else:  # hooks log their own lines (probes): keep the latest value of each
                    last_val.update(rec)
        for k, v in _numeric_items(last_train).items():
            if k.startswith('loss'):
                out[f'train/{k}'] = v
        for k, v in _numeric_items(last_val, skip=('time', 'data_time', 'step', 'epoch', 'iter')).items():
            out[f'val/{k}'] = v
    return out


_CONFIG_CACHE: Dict[str, Any] = {}


def load_config(path: str) -> Dict[str, Any]:
    """A config file as a plain dict (``mmengine.Config.fromfile(path).to_dict()``), cached per
    process; read for option filtering and --data-root (mmengine is imported only then)."""
    if path not in _CONFIG_CACHE:
        from mmengine.config import Config
        _CONFIG_CACHE[path] = Config.fromfile(path).to_dict()
    return _CONFIG_CACHE[path]


def has_parent_key(cfg: Any, dotted: str) -> bool:
    """Whether every component of ``dotted`` but the last exists in ``cfg`` (dicts, list indices)."""
    node = cfg
    for part in dotted.split('.')[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, (dict, list, tuple))


def data_root_options(config_path: str, new_root: str) -> List[str]:
    """cfg-options that move a config onto another data root.

    The config's top-level ``data_root`` (every shipped config has one) is the old root. Every
    ``data_root`` field equal to it becomes ``new_root``, and every other string field that starts
    with it (``ann_file`` of a COCO evaluator, ``out_file`` of a mining evaluator...) gets the new
    prefix. Relative fields (joined to the dataset's ``data_root`` by the dataset) need nothing.
    """
    cfg = load_config(config_path)
    old = cfg.get('data_root')
    if not isinstance(old, str) or not old:
        raise PipelineError(f'{config_path}: --data-root needs a top-level data_root in the config')
    new = new_root if not old.endswith('/') or new_root.endswith('/') else new_root + '/'
    items: List[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f'{path}.{k}' if path else str(k)
                if isinstance(v, str):
                    if k == 'data_root' and osp.normpath(v) == osp.normpath(old):
                        items.append(f'{sub}={new}')
                    elif v.startswith(old) and sub != 'data_root':
                        items.append(f'{sub}={new}{v[len(old):]}')
                else:
                    walk(v, sub)
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}.{i}')

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator',
                'train_cfg', 'val_cfg', 'test_cfg', 'custom_hooks'):
        if key in cfg:
            walk(cfg[key], key)
    return items


def schedule_options(config_path: str, length: int) -> List[str]:
    """cfg-options that change a config's training length to ``length`` epochs (epoch-based loop)
    or iterations (iteration-based loop) and rescale its schedule with it.

    A scheduler ending at the old length now ends at the new one (and a cosine ``T_max`` that
    spanned it spans the new span); step ``milestones`` and a warm-up longer than the new run scale
    proportionally; ``val_interval`` equal to the old length follows. Without this, overriding
    ``train_cfg.max_epochs`` alone leaves the learning rate where a long schedule would be.
    """
    if length < 1:
        raise PipelineError(f'{config_path}: a schedule needs at least 1 epoch/iteration, got {length}')
    cfg = load_config(config_path)
    tc = cfg.get('train_cfg') or {}
    key = 'max_epochs' if 'max_epochs' in tc else 'max_iters' if 'max_iters' in tc else None
    if key is None:
        raise PipelineError(f'{config_path}: train_cfg has neither max_epochs nor max_iters')
    old = int(tc[key])
    by_epoch = key == 'max_epochs'
    items = [f'train_cfg.{key}={length}']
    if tc.get('val_interval') == old:
        items.append(f'train_cfg.val_interval={length}')
    scheds = cfg.get('param_scheduler') or []
    single = isinstance(scheds, dict)
    for i, sch in enumerate([scheds] if single else scheds):
        if bool(sch.get('by_epoch', True)) != by_epoch:
            continue  # measured in the other unit: left alone
        pre = 'param_scheduler' if single else f'param_scheduler.{i}'
        begin = int(sch.get('begin', 0))
        end = sch.get('end')
        if end is not None and end >= old:
            if length <= begin:
                continue  # the shorter run ends before this scheduler starts
            items.append(f'{pre}.end={length}')
            if sch.get('T_max') == old - begin:
                items.append(f'{pre}.T_max={max(1, length - begin)}')
        elif end is not None and end > length:  # a warm-up longer than the new run
            items.append(f'{pre}.end={max(1, round(end * length / old))}')
        if sch.get('milestones'):
            ms = [max(1, round(m * length / old)) for m in sch['milestones']]
            items.append(f'{pre}.milestones=[{",".join(str(m) for m in ms)}]')
    return items


def _fmt_metric(v: Any) -> str:
    return f'{v:.4f}' if isinstance(v, float) else str(v)


@dataclass
class PipelineOptions:
    """Everything a pipeline run needs (the CLI fills it; the demo and the benchmark build it)."""

    preset_or_dir: str
    work_dir: Optional[str] = None
    from_stage: Optional[str] = None
    to_stage: Optional[str] = None
    force: bool = False
    finetune: bool = False
    gpus: int = 1
    launcher: str = 'none'
    partition: str = ''
    srun_args: str = ''
    cfg_options: List[str] = field(default_factory=list)
    data_root: Optional[str] = None
    schedule: Dict[str, int] = field(default_factory=dict)
    use: Dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    quiet: bool = False
    python: str = sys.executable
    tools_dir: Optional[str] = None
    env: Optional[Dict[str, str]] = None


class Pipeline:
    """Runs the stage graph; see the module docstring for the rules."""

    def __init__(self, opts: PipelineOptions) -> None:
        self.opts = opts
        self.label, self.configs = resolve_configs(opts.preset_or_dir)
        self.work_dir = osp.abspath(opts.work_dir or osp.join('work_dirs', 'pipeline', self.label))
        self.tools_dir = opts.tools_dir or osp.join(repo_root(), 'tools')
        self.stage_options = parse_stage_options(opts.cfg_options)
        self.schedule = {resolve_stage(k): int(v) for k, v in opts.schedule.items()}
        self.use = {resolve_stage(k): osp.abspath(v) for k, v in opts.use.items()}
        for k, path in self.use.items():
            if not osp.exists(path):
                raise PipelineError(f'--use {k}={path}: no such file or directory')
        for k in self.schedule:
            if STAGE_BY_NAME[k].entry == 'test':
                raise PipelineError(f'--schedule {k}: a mining stage has no training schedule')
        if opts.launcher not in ('none', 'pytorch', 'slurm'):
            raise PipelineError(f'--launcher must be none, pytorch or slurm, got {opts.launcher!r}')
        names = [s.name for s in STAGES if opts.finetune or not s.optional]
        if opts.to_stage:
            to = resolve_stage(opts.to_stage)
            if to not in names:
                raise PipelineError(f'--to {to}: that stage is not part of this run (add --finetune?)')
            names = names[:names.index(to) + 1]
        self.stages = names
        missing = [s for s in names if s not in self.configs and s not in self.use]
        if missing:
            if opts.preset_or_dir in PRESETS:
                want = ', '.join(f'{s}: {PRESETS[opts.preset_or_dir][s]}' for s in missing)
                raise PipelineError(f'preset {self.label!r}: no config file matches ({want})')
            want = ', '.join(STAGE_BY_NAME[s].config_file for s in missing)
            raise PipelineError(f'directory {opts.preset_or_dir!r} has no {want}')
        self.forced: set = set(names) if opts.force else set()
        if opts.from_stage:
            start = resolve_stage(opts.from_stage)
            self.forced |= set(descendants(start))
        self.records: Dict[str, dict] = {}

    # ----------------------------------------------------------------- wiring
    def stage_dir(self, stage: str) -> str:
        return osp.join(self.work_dir, stage)

    def _inputs(self, stage: str) -> Tuple[Optional[str], Dict[str, Any]]:
        """(checkpoint, {cfg key: value}) fed from upstream outputs.

        The checkpoint is test.py's CHECKPOINT argument (the model's ``load_from``) for mining
        stages, and det_train.py's ``--pretrained`` for the fine-tune.
        """
        out = lambda s, k: self.records[s]['outputs'][k]  # noqa: E731
        wd = self.stage_dir(stage)
        if stage == 'stage1':
            return None, {}
        if stage == 'knn':
            return out('stage1', 'checkpoint'), {STORE_OUT_KEY: osp.join(wd, STORE_NAMES['knn'])}
        if stage == 'selective_search':
            return None, {STORE_OUT_KEY: osp.join(wd, STORE_NAMES['selective_search'])}
        if stage == 'correspondence':
            return out('stage1', 'checkpoint'), {
                CORR_SS_KEY: out('selective_search', 'store'),
                CORR_KNN_KEY: out('knn', 'store'),
                STORE_OUT_KEY: osp.join(wd, STORE_NAMES['correspondence']),
            }
        if stage == 'stage3':
            return None, {STAGE3_CORR_KEY: out('correspondence', 'store')}
        if stage == 'finetune':
            return out('stage3', 'checkpoint'), {}
        raise PipelineError(f'no wiring for stage {stage}')

    def _options(self, stage: str, wired: Dict[str, Any]) -> List[str]:
        """cfg-options, later items winning: --data-root moves, wiring, global then per-stage user items."""
        items: List[str] = []
        if self.opts.data_root:
            items += data_root_options(self.configs[stage], osp.abspath(self.opts.data_root))
        if stage in self.schedule:
            items += schedule_options(self.configs[stage], self.schedule[stage])
        items += [f'{k}={v}' for k, v in wired.items()]
        # An item for every stage only goes where it makes sense: a config that has its parent key
        # (``train_dataloader.num_workers=0`` must not give a mining config a half train_dataloader).
        common = self.stage_options.get('*', [])
        if common:
            cfg = load_config(self.configs[stage])
            items += [it for it in common if has_parent_key(cfg, it.split('=', 1)[0])]
        items += self.stage_options.get(stage, [])
        # One item per key, the last one winning (as DictAction would): shorter, clearer commands.
        merged: Dict[str, str] = {}
        for it in items:
            key = it.split('=', 1)[0]
            merged.pop(key, None)
            merged[key] = it
        return list(merged.values())

    def _fingerprint(self, stage: str, checkpoint: Optional[str], options: List[str]) -> str:
        spec = STAGE_BY_NAME[stage]
        payload = {
            'config': self.configs[stage],
            'config_sha': _file_sha(self.configs[stage]),
            'checkpoint': checkpoint,
            'options': options,
            'upstream': {d: self.records[d]['run_id'] for d in spec.deps},
        }  # the launcher and process count are left out: a finished stage stays done on other hardware
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    # ----------------------------------------------------------------- launching
    def _entry_script(self, entry: str) -> str:
        name = {'train': 'train.py', 'test': 'test.py', 'det_train': 'det_train.py'}[entry]
        path = osp.join(self.tools_dir, name)
        if not osp.isfile(path):
            raise PipelineError(f'entry point {path} not found (set tools_dir / run from a checkout)')
        return path

    def build_command(self, stage: str, checkpoint: Optional[str], options: List[str],
                      resume: bool) -> List[str]:
        """The exact command a user would type for this stage."""
        spec = STAGE_BY_NAME[stage]
        cfg = self.configs[stage]
        wd = self.stage_dir(stage)
        script = self._entry_script(spec.entry)
        pos = [cfg]
        tail = ['--work-dir', wd]
        if spec.entry == 'det_train':
            if checkpoint:
                tail += ['--pretrained', checkpoint]
        elif checkpoint:
            pos.append(checkpoint)
        if resume:
            tail.append('--resume')
        if options:
            tail += ['--cfg-options'] + options
        launcher, gpus = self.opts.launcher, self.opts.gpus
        if launcher == 'slurm':
            # tools/slurm_{train,test}.sh PARTITION JOB_NAME CONFIG (WORK_DIR | CHECKPOINT) [options];
            # GPUS / GPUS_PER_NODE / SRUN_ARGS / PYTHON come through the environment (_launch_env).
            if not self.opts.partition:
                raise PipelineError('--launcher slurm needs --partition')
            job = f'orl-{stage}'
            if spec.entry == 'test':
                sh = osp.join(self.tools_dir, 'slurm_test.sh')
                return ['bash', sh, self.opts.partition, job, cfg, checkpoint or 'none'] + tail
            if spec.entry == 'train':
                # slurm_train.sh takes WORK_DIR as a positional argument.
                sh = osp.join(self.tools_dir, 'slurm_train.sh')
                return ['bash', sh, self.opts.partition, job, cfg, wd] + tail[2:]
            # det_train.py has no slurm script of its own: the same srun line as slurm_train.sh.
            per_node = min(gpus, 8)
            return (['srun', '-p', self.opts.partition, f'--job-name={job}', f'--gres=gpu:{per_node}',
                     f'--ntasks={gpus}', f'--ntasks-per-node={per_node}', '--cpus-per-task=5',
                     '--kill-on-bad-exit=1'] + shlex.split(self.opts.srun_args)
                    + [self.opts.python, '-u', script] + pos + ['--launcher', 'slurm'] + tail)
        if launcher == 'pytorch' or gpus > 1:
            # tools/dist_train.sh CONFIG GPUS [options]; tools/dist_test.sh CONFIG CHECKPOINT GPUS
            # [options] ('none' when the step needs no weights).
            if spec.entry == 'test':
                sh = osp.join(self.tools_dir, 'dist_test.sh')
                return ['bash', sh, cfg, checkpoint or 'none', str(gpus)] + tail
            if spec.entry == 'train':
                sh = osp.join(self.tools_dir, 'dist_train.sh')
                return ['bash', sh, cfg, str(gpus)] + tail
            # det_train.py: torchrun exactly as dist_train.sh runs train.py.
            port = os.environ.get('PORT', '29500')
            return ([self.opts.python, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
                     f'--master_port={port}', script] + pos + ['--launcher', 'pytorch'] + tail)
        return [self.opts.python, script] + pos + tail

    def _launch_env(self) -> Dict[str, str]:
        env = dict(os.environ if self.opts.env is None else self.opts.env)
        env.setdefault('PYTHONUNBUFFERED', '1')
        # The launcher scripts run ``$PYTHON``: the interpreter the pipeline itself runs with.
        env.setdefault('PYTHON', self.opts.python)
        if self.opts.launcher == 'slurm':
            env['GPUS'] = str(self.opts.gpus)
            env.setdefault('GPUS_PER_NODE', str(min(self.opts.gpus, 8)))
            if self.opts.srun_args:
                env['SRUN_ARGS'] = self.opts.srun_args
        return env

    def _run_command(self, cmd: List[str], log_path: str) -> int:
        """Run ``cmd``, teeing its output into ``log_path`` (and the console unless quiet)."""
        env = self._launch_env()
        with open(log_path, 'a') as log:
            log.write(f'$ {shlex.join(cmd)}\n')
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    text=True, errors='replace', bufsize=1)
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    log.write(line)
                    if not self.opts.quiet:
                        sys.stdout.write(line)
                        sys.stdout.flush()
            except KeyboardInterrupt:
                proc.terminate()
                proc.wait()
                raise
            return proc.wait()

    # ----------------------------------------------------------------- outputs
    def _collect_outputs(self, stage: str, wired: Dict[str, Any]) -> Dict[str, str]:
        spec = STAGE_BY_NAME[stage]
        wd = self.stage_dir(stage)
        if spec.entry in ('train', 'det_train'):
            ckpt = latest_checkpoint(wd)
            if not ckpt:
                raise PipelineError(f'{stage}: the run finished but left no checkpoint in {wd}')
            return {'checkpoint': ckpt}
        store = wired[STORE_OUT_KEY]
        if not osp.exists(store):
            raise PipelineError(f'{stage}: the run finished but its store {store} was not written')
        return {'store': store}

    def _outputs_exist(self, record: dict) -> bool:
        return all(osp.exists(p) for p in record.get('outputs', {}).values())

    # ----------------------------------------------------------------- main loop
    def _say(self, msg: str) -> None:
        print(f'[pipeline] {msg}', flush=True)

    def run(self) -> Dict[str, Any]:
        """Run (or skip) every stage in order; returns the summary also written to the work dir."""
        os.makedirs(self.work_dir, exist_ok=True)
        self._say(f'{self.label}: work dir {self.work_dir}; stages: {", ".join(self.stages)}'
                  + (f'; forced: {", ".join(s for s in self.stages if s in self.forced)}' if self.forced else ''))
        for stage in self.stages:
            self._run_stage(stage)
        summary = self.summary()
        if not self.opts.dry_run:
            write_json_atomic(osp.join(self.work_dir, SUMMARY_FILE), summary)
        self._say(self.format_table())
        return summary

    def _run_stage(self, stage: str) -> None:
        spec = STAGE_BY_NAME[stage]
        wd = self.stage_dir(stage)
        if stage in self.use:
            # An output made elsewhere (another run, an official ORL JSON): not run; its identity
            # (path, size, mtime) stands in for a run id, so consumers rerun when it changes.
            path = self.use[stage]
            st = os.stat(path)
            kind = 'store' if spec.entry == 'test' else 'checkpoint'
            self.records[stage] = {'stage': stage, 'run_id': f'use:{path}:{st.st_size}:{st.st_mtime_ns}',
                                   'outputs': {kind: path}, 'skipped': True, 'provided': True,
                                   'metrics': {}, 'wall_s': None, 'log': None}
            self._say(f'{stage}: using the given {kind} {path}')
            return
        if self.opts.dry_run:
            # Placeholder-free dry run: show the commands with symbolic upstream outputs.
            self.records[stage] = {'run_id': 'dry-run', 'outputs': {
                'checkpoint': osp.join(wd, '<latest>.pth'),
                'store': osp.join(wd, STORE_NAMES.get(stage, ''))}}
            ckpt, wired = self._inputs(stage)
            cmd = self.build_command(stage, ckpt, self._options(stage, wired), resume=False)
            self._say(f'{stage}: {shlex.join(cmd)}')
            return
        ckpt, wired = self._inputs(stage)
        options = self._options(stage, wired)
        fp = self._fingerprint(stage, ckpt, options)
        done = _read_json(osp.join(wd, DONE_MARKER))
        if stage not in self.forced and done and done.get('fingerprint') == fp and self._outputs_exist(done):
            done['skipped'] = True
            self.records[stage] = done
            self._say(f'{stage}: already done ({done.get("finished_at")}), skipped; '
                      f'outputs {done["outputs"]}')
            return
        if done and stage not in self.forced:
            why = 'inputs/config changed' if done.get('fingerprint') != fp else 'outputs missing'
            self._say(f'{stage}: previous result is stale ({why}); running again')
        started = _read_json(osp.join(wd, STARTED_MARKER))
        resume = False
        if osp.isdir(wd) and os.listdir(wd):
            if started is None:
                raise PipelineError(f'{wd} exists and was not made by the pipeline; refusing to overwrite it '
                                    '(choose another --work-dir)')
            if stage in self.forced or done or started.get('fingerprint') != fp:
                shutil.rmtree(wd)
            else:
                # The same stage crashed before: training resumes from its last checkpoint; mining
                # stages pick their finished chunks up from their cache in the same work dir.
                resume = spec.entry in ('train', 'det_train') and latest_checkpoint(wd) is not None
        os.makedirs(wd, exist_ok=True)
        write_json_atomic(osp.join(wd, STARTED_MARKER), {'stage': stage, 'fingerprint': fp})
        cmd = self.build_command(stage, ckpt, options, resume=resume)
        log_path = osp.join(wd, 'pipeline_stage.log')
        self._say(f'{stage} ({spec.title}){" resuming" if resume else ""}: {shlex.join(cmd)}')
        before = set(_timestamp_dirs(wd))
        t0 = time.time()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rc = self._run_command(cmd, log_path)
        wall = time.time() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of the stage's processes (all ranks on this node): a load-independent cost.
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if rc != 0:
            tail = ''
            try:
                with open(log_path, errors='replace') as f:
                    tail = ''.join(f.readlines()[-25:])
            except OSError:
                pass
            raise PipelineError(f'stage {stage} failed (exit code {rc}) after {wall:.1f} s; full output: '
                                f'{log_path}\n--- last lines ---\n{tail}')
        outputs = self._collect_outputs(stage, wired)
        new_dirs = [d for d in _timestamp_dirs(wd) if d not in before] or _timestamp_dirs(wd)[-1:]
        metrics: Dict[str, Any] = {}
        runner_log = None
        for d in new_dirs:
            metrics.update(read_run_metrics(d))
            cand = osp.join(d, f'{osp.basename(d)}.log')
            if osp.isfile(cand):
                runner_log = cand
        record = {
            'stage': stage,
            'run_id': uuid.uuid4().hex,
            'finished_at': datetime.datetime.now().isoformat(timespec='seconds'),
            'wall_s': round(wall, 2),
            'cpu_s': round(cpu, 2),
            'config': self.configs[stage],
            'command': cmd,
            'fingerprint': fp,
            'inputs': {'checkpoint': ckpt, **wired} if ckpt else dict(wired),
            'outputs': outputs,
            'log': runner_log or log_path,
            'stage_log': log_path,
            'metrics': metrics,
        }
        write_json_atomic(osp.join(wd, DONE_MARKER), record)
        record['skipped'] = False
        self.records[stage] = record
        shown = ', '.join(f'{k}={_fmt_metric(v)}' for k, v in metrics.items()) or '-'
        self._say(f'{stage}: done in {wall:.1f} s ({cpu:.0f} CPU s); outputs {outputs}; '
                  f'log {record["log"]}; metrics: {shown}')

    # ----------------------------------------------------------------- reporting
    def summary(self) -> Dict[str, Any]:
        return {
            'pipeline': self.label,
            'work_dir': self.work_dir,
            'stages': {s: {k: r.get(k) for k in ('skipped', 'provided', 'wall_s', 'cpu_s', 'config', 'outputs',
                                                 'log', 'metrics', 'run_id', 'finished_at')}
                       for s, r in self.records.items()},
        }

    def format_table(self) -> str:
        lines = ['summary:', f'  {"stage":<17} {"status":<8} {"time":>8}  output / metrics']
        for stage in self.stages:
            r = self.records.get(stage)
            if r is None:
                continue
            status = ('given' if r.get('provided') else 'dry-run' if self.opts.dry_run
                      else 'skipped' if r.get('skipped') else 'ran')
            wall = f'{r["wall_s"]:.1f}s' if isinstance(r.get('wall_s'), (int, float)) else '-'
            outs = ' '.join(r.get('outputs', {}).values())
            lines.append(f'  {stage:<17} {status:<8} {wall:>8}  {outs}')
            if r.get('log') and not self.opts.dry_run:
                lines.append(f'  {"":<17} {"":<8} {"":>8}  log: {r["log"]}')
            for k, v in (r.get('metrics') or {}).items():
                lines.append(f'  {"":<17} {"":<8} {"":>8}  {k} = {_fmt_metric(v)}')
        return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``tools/pipeline.py`` / ``orl-pipeline`` command line."""
    stage_names = ', '.join(f"{s.name} ({'/'.join(s.aliases)})" for s in STAGES)
    p = argparse.ArgumentParser(
        prog='orl-pipeline',
        description='Run ORL stage 1 -> 2a/2b/2c -> 3 (-> detection fine-tune) through the ordinary entry '
                    'points, skipping stages that are already done.',
        epilog=f'stages: {stage_names}. Per-stage options: --cfg-options 2a:test_dataloader.batch_size=8; '
               "an item without STAGE: goes to every stage whose config has the key's parent.")
    p.add_argument('pipeline', help=f'preset ({", ".join(PRESETS)}) or a directory holding '
                                    + '/'.join(s.config_file for s in STAGES))
    p.add_argument('--work-dir', help='default: work_dirs/pipeline/<preset or directory name>')
    p.add_argument('--from', dest='from_stage', metavar='STAGE',
                   help='rerun STAGE and every stage downstream of it, even if done')
    p.add_argument('--to', dest='to_stage', metavar='STAGE', help='stop after STAGE')
    p.add_argument('--force', action='store_true', help='rerun every stage, done or not')
    p.add_argument('--finetune', action='store_true', help='also fine-tune a detector from the stage-3 backbone')
    p.add_argument('--gpus', type=int, default=1,
                   help='processes per stage; > 1 launches through tools/dist_train.sh / dist_test.sh')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                   help="'pytorch': tools/dist_{train,test}.sh with --gpus processes; 'slurm': "
                        "tools/slurm_{train,test}.sh on --partition with --gpus tasks")
    p.add_argument('--partition', default='', help='slurm partition (with --launcher slurm)')
    p.add_argument('--srun-args', default='', help='extra srun arguments (SRUN_ARGS of tools/slurm_*.sh)')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='[STAGE:]KEY=VALUE',
                   help='config overrides for one stage (prefix STAGE:), or, without a prefix, for '
                        "every stage whose config has the key's parent (e.g. train_dataloader)")
    p.add_argument('--schedule', nargs='+', default=[], metavar='STAGE=N',
                   help='train STAGE for N epochs (N iterations for iteration-based configs), '
                        'rescaling its LR schedule; e.g. --schedule stage1=12 stage3=12 ft=150')
    p.add_argument('--use', nargs='+', default=[], metavar='STAGE=PATH',
                   help="use this output for STAGE instead of running it: a store or official ORL JSON "
                        "for a mining stage, a checkpoint for a training stage")
    p.add_argument('--data-root', help="run on this data root instead of the configs' data_root")
    p.add_argument('--dry-run', action='store_true', help='print the commands and exit')
    p.add_argument('--quiet', action='store_true', help="write stage output only to the stage's log file")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry: returns the exit status (0 on success, 1 when a stage failed)."""
    args = build_parser().parse_args(argv)
    schedule = {}
    for item in args.schedule:
        stage, sep, n = item.partition('=')
        if not sep or not n.isdigit():
            print(f'[pipeline] ERROR: --schedule item {item!r} is not STAGE=N', file=sys.stderr)
            return 2
        schedule[stage] = int(n)
    use = {}
    for item in args.use:
        stage, sep, path = item.partition('=')
        if not sep or not path:
            print(f'[pipeline] ERROR: --use item {item!r} is not STAGE=PATH', file=sys.stderr)
            return 2
        use[stage] = path
    opts = PipelineOptions(
        preset_or_dir=args.pipeline, work_dir=args.work_dir, from_stage=args.from_stage,
        to_stage=args.to_stage, force=args.force, finetune=args.finetune, gpus=args.gpus,
        launcher=args.launcher, partition=args.partition, srun_args=args.srun_args,
        cfg_options=args.cfg_options, data_root=args.data_root, schedule=schedule, use=use,
        dry_run=args.dry_run, quiet=args.quiet)
    try:
        Pipeline(opts).run()
    except PipelineError as e:
        print(f'[pipeline] ERROR: {e}', file=sys.stderr, flush=True)
        return 1
    return 0
