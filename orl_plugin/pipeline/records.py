"""What a stage leaves behind: markers, fingerprints, its output, the figures in its runner logs, the summary."""
import glob
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..store import atomic_write_json
from .stages import PipelineError, StageSpec

DONE_MARKER = 'pipeline_done.json'
STARTED_MARKER = 'pipeline_started.json'
SUMMARY_FILE = 'pipeline_summary.json'
STAGE_LOG = 'pipeline_stage.log'
SUMMARY_KEYS = ('skipped', 'provided', 'wall_s', 'cpu_s', 'config', 'outputs', 'log', 'metrics', 'run_id',
                'finished_at')
_NOT_METRICS = ('time', 'data_time', 'step', 'epoch', 'iter')


def read_json(path: str) -> Optional[Any]:
    """The JSON in ``path``; None when it is missing or unreadable (a marker cut short by a crash)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fingerprint(config: str,
                checkpoint: Optional[str],
                options: List[str],
                upstream: Mapping[str, str],
                data: Optional[str] = None) -> str:
    """What decides a stage's result: its config file (path and content), checkpoint argument,
    cfg-options, the run ids of the stages it consumes and, for a plain image folder, ``data``
    (:func:`folder_digest`: images added, removed or changed rerun the stages). The launcher and
    process count are left out: a finished stage stays done on other hardware."""
    with open(config, 'rb') as f:
        config_sha = hashlib.sha256(f.read()).hexdigest()
    payload = {
        'config': config, 'config_sha': config_sha, 'checkpoint': checkpoint, 'options': options,
        'upstream': dict(upstream)
    }
    if data is not None:
        payload['data'] = data
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def folder_digest(root: str, names: Sequence[str]) -> str:
    """Identity of an image folder's content: each listed file's relative path, size and mtime."""
    h = hashlib.sha256()
    for name in names:
        st = os.stat(osp.join(root, name))
        h.update(f'{name}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode('utf-8', 'surrogateescape'))
    return h.hexdigest()[:16]


def provided_record(stage: str, kind: str, path: str) -> Dict[str, Any]:
    """The record of an output made elsewhere (``--use``): its identity (path, size, mtime) stands in
    for a run id, so the stages consuming it rerun when it changes."""
    st = os.stat(path)
    return {
        'stage': stage, 'run_id': f'use:{path}:{st.st_size}:{st.st_mtime_ns}', 'outputs': {kind: path}, 'skipped': True,
        'provided': True, 'metrics': {}, 'wall_s': None, 'log': None
    }


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


def still_done(work_dir: str, fp: str) -> Tuple[Optional[dict], str]:
    """``(done record, '')`` when the run in ``work_dir`` finished with fingerprint ``fp`` and its outputs
    still exist; else ``(None, why it is stale)``, ``why`` empty when it never finished."""
    done = read_json(osp.join(work_dir, DONE_MARKER))
    if not done:
        return None, ''
    if done.get('fingerprint') != fp:
        return None, 'inputs/config changed'
    if not all(osp.exists(p) for p in done.get('outputs', {}).values()):
        return None, 'outputs missing'
    return done, ''


def prepare_work_dir(work_dir: str, fp: str, fresh: bool) -> bool:
    """Make ``work_dir`` ready for a run with fingerprint ``fp``; returns whether it kept what a crashed
    run of the same fingerprint left there (a training stage resumes from its last checkpoint, a mining
    stage picks its finished chunks up from its cache).

    A non-empty dir the pipeline did not make is refused. It is emptied when ``fresh``, when it holds a
    finished run, or when its run had another fingerprint.
    """
    kept = False
    if osp.isdir(work_dir) and os.listdir(work_dir):
        started = read_json(osp.join(work_dir, STARTED_MARKER))
        if started is None:
            raise PipelineError(f'{work_dir} exists and was not made by the pipeline; refusing to overwrite it '
                                '(choose another --work-dir)')
        if fresh or read_json(osp.join(work_dir, DONE_MARKER)) or started.get('fingerprint') != fp:
            shutil.rmtree(work_dir)
        else:
            kept = True
    os.makedirs(work_dir, exist_ok=True)
    marker = {'stage': osp.basename(work_dir), 'fingerprint': fp}
    atomic_write_json(osp.join(work_dir, STARTED_MARKER), marker, indent=2)
    return kept


def collect_outputs(spec: StageSpec, work_dir: str) -> Dict[str, str]:
    """What a finished run of ``spec`` left in ``work_dir``: its latest checkpoint or its store."""
    if spec.output == 'checkpoint':
        ckpt = latest_checkpoint(work_dir)
        if not ckpt:
            raise PipelineError(f'{spec.name}: the run finished but left no checkpoint in {work_dir}')
        return {'checkpoint': ckpt}
    store = osp.join(work_dir, spec.store or '')
    if not osp.exists(store):
        raise PipelineError(f'{spec.name}: the run finished but its store {store} was not written')
    return {'store': store}


def timestamp_dirs(work_dir: str) -> List[str]:
    """Runner log dirs (``<work_dir>/<YYYYmmdd_HHMMSS>/``), oldest first."""
    dirs = [d for d in glob.glob(osp.join(work_dir, '[0-9]' * 8 + '_' + '[0-9]' * 6)) if osp.isdir(d)]
    return sorted(dirs)


def _numeric_items(d: dict, skip: Sequence[str] = ()) -> Dict[str, float]:
    return {k: v for k, v in d.items() if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_run_metrics(log_dir: str) -> Dict[str, Any]:
    """Quality figures of one runner run from its json logs.

    * ``<log_dir>/<ts>.json`` (written by LoggerHook after ``Runner.test()``): the evaluator's metrics.
    * ``<log_dir>/vis_data/scalars.json`` (one json per line): the last training line's losses
      (``train/loss*``) and the latest value of every other scalar (``val/<name>``: validation
      metrics, probe hooks).
    """
    out: Dict[str, Any] = {}
    ts = osp.basename(log_dir)
    test_json = read_json(osp.join(log_dir, f'{ts}.json'))
    if isinstance(test_json, dict):
        out.update(_numeric_items(test_json, skip=_NOT_METRICS))
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
        for k, v in _numeric_items(last_val, skip=_NOT_METRICS).items():
            out[f'val/{k}'] = v
    return out


def read_new_runs(work_dir: str, before: Set[str]) -> Tuple[Dict[str, Any], Optional[str]]:
    """``(metrics, runner log)`` of the runner runs a stage made (its log dirs not in ``before``; the
    newest one if it made none)."""
    new_dirs = [d for d in timestamp_dirs(work_dir) if d not in before] or timestamp_dirs(work_dir)[-1:]
    metrics: Dict[str, Any] = {}
    runner_log = None
    for d in new_dirs:
        metrics.update(read_run_metrics(d))
        log = osp.join(d, f'{osp.basename(d)}.log')
        if osp.isfile(log):
            runner_log = log
    return metrics, runner_log


def fmt_metric(v: Any) -> str:
    return f'{v:.4f}' if isinstance(v, float) else str(v)


def fmt_metrics(metrics: Mapping[str, Any]) -> str:
    return ', '.join(f'{k}={fmt_metric(v)}' for k, v in metrics.items()) or '-'


def summary(label: str, work_dir: str, records: Mapping[str, dict]) -> Dict[str, Any]:
    """What ``<work_dir>/pipeline_summary.json`` holds: per stage, its status, cost, output, log and metrics."""
    return {
        'pipeline': label,
        'work_dir': work_dir,
        'stages': {s: {k: r.get(k) for k in SUMMARY_KEYS} for s, r in records.items()},
    }


def format_table(stages: Iterable[str], records: Mapping[str, dict], dry_run: bool) -> str:
    """The summary as a table for the console."""
    lines = ['summary:', f'  {"stage":<17} {"status":<8} {"time":>8}  output / metrics']
    pad = f'  {"":<17} {"":<8} {"":>8}  '
    for stage in stages:
        r = records.get(stage)
        if r is None:
            continue
        status = ('given' if r.get('provided') else 'dry-run' if dry_run else 'skipped' if r.get('skipped') else 'ran')
        wall = f'{r["wall_s"]:.1f}s' if isinstance(r.get('wall_s'), (int, float)) else '-'
        outs = ' '.join(r.get('outputs', {}).values())
        lines.append(f'  {stage:<17} {status:<8} {wall:>8}  {outs}')
        if r.get('log') and not dry_run:
            lines.append(f'{pad}log: {r["log"]}')
        lines += [f'{pad}{k} = {fmt_metric(v)}' for k, v in (r.get('metrics') or {}).items()]
    return '\n'.join(lines)
