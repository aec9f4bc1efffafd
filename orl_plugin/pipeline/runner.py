"""The pipeline run: each stage in order, taken from ``--use``, skipped when done, resumed or run."""
import datetime
import hashlib
import os
import os.path as osp
import re
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..store import IMG_EXTENSIONS, atomic_write_json, load_image_list
from .config_edits import image_list_options, load_config, parse_stage_options, stage_options
from .launch import Launcher, Stopwatch, log_tail
from .presets import FOLDER, FOLDER_PRESETS, check_configs, folder_recipe, repo_root, resolve_configs
from .records import (DONE_MARKER, STAGE_LOG, SUMMARY_FILE, collect_outputs, fingerprint, fmt_metrics, folder_digest,
                      format_table, latest_checkpoint, prepare_work_dir, provided_record, read_new_runs, still_done,
                      summary, timestamp_dirs)
from .stages import STAGE_BY_NAME, PipelineError, descendants, resolve_stage, select_stages, wire

# What mmengine's --cfg-options parser (DictAction) cannot carry in a path: it deletes spaces, splits
# at commas and strips brackets and quotes.
_NOT_IN_OPTIONS = re.compile(r'[\s,\[\]()\'"]')
DATA_LINK = 'data_root'  # <work_dir>/data_root -> a data root whose path has such characters


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
    image_list: Optional[str] = None
    schedule: Dict[str, int] = field(default_factory=dict)
    use: Dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    quiet: bool = False
    python: str = sys.executable
    tools_dir: Optional[str] = None
    env: Optional[Dict[str, str]] = None


class Pipeline:
    """Runs the stage graph.

    Each stage runs in ``<work_dir>/<stage>/``. When it succeeds the pipeline writes
    ``<work_dir>/<stage>/pipeline_done.json`` atomically (outputs, log, metrics, command, fingerprint).
    A later run skips a stage whose marker is present, whose outputs still exist and whose fingerprint
    (config file content, cfg-options, inputs, the run ids of the upstream stages and, for a folder
    preset, the folder's file list, sizes and times) is unchanged, so a
    crashed pipeline resumes where it stopped; a crashed *training* stage resumes from its last
    checkpoint (``--resume``), a crashed mining stage from its chunk cache. Re-running an upstream stage
    gives it a new run id, which makes every stage downstream of it stale. ``--from STAGE`` forces STAGE
    and every stage that consumes its output (directly or not) to run again from scratch.
    """

    def __init__(self, opts: PipelineOptions) -> None:
        self.opts = opts
        self.preset, self.recipe_reason = opts.preset_or_dir, ''
        if self.preset == FOLDER:
            self.preset, self.recipe_reason = folder_recipe(opts.gpus, opts.launcher)
        self.label, self.configs = resolve_configs(self.preset)
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
        self.launcher = Launcher(self.tools_dir, opts.python, opts.launcher, opts.gpus, opts.partition, opts.srun_args,
                                 opts.env, opts.quiet)
        if _NOT_IN_OPTIONS.search(self.work_dir):
            raise PipelineError(f'the work dir {self.work_dir!r} has a space, comma, bracket or quote, which the '
                                "stages' --cfg-options cannot carry (mmengine's DictAction); choose another --work-dir")
        self.stages = select_stages(opts.finetune, opts.to_stage)
        check_configs(self.preset, [s for s in self.stages if s not in self.configs and s not in self.use])
        self.image_list = self._check_image_list()
        self.fitted_batches: Dict[str, Tuple[int, int]] = {}  # stage -> (config's batch, the folder's)
        # A plain image folder: its file count and content digest (which joins every fingerprint).
        self.folder: Optional[Dict[str, Any]] = self._check_folder() if self.preset in FOLDER_PRESETS else None
        self.forced: set = set(self.stages) if opts.force else set()
        if opts.from_stage:
            self.forced |= set(descendants(resolve_stage(opts.from_stage)))
        self.records: Dict[str, dict] = {}

    def _check_image_list(self) -> Optional[Dict[str, Any]]:
        """``--image-list``: a COCO-style list of images (``check_images.py --out``) every stage reads
        instead of its own list, from the image folder its config names (``--data-root`` moves it)."""
        if not self.opts.image_list:
            return None
        path = osp.abspath(self.opts.image_list)
        if not osp.isfile(path):
            raise PipelineError(f'--image-list {path}: no such file')
        if _NOT_IN_OPTIONS.search(path):
            raise PipelineError(f'--image-list {path}: the path has a space, comma, bracket or quote, which the '
                                "stages' --cfg-options cannot carry; move or link the file")
        try:
            names, _ = load_image_list(path)
        except (OSError, ValueError) as e:
            raise PipelineError(f'--image-list {path}: {e}') from None
        if not names:
            raise PipelineError(f'--image-list {path}: the list names no image')
        with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        for stage in self.stages:
            if stage in self.configs and stage != 'finetune':
                image_list_options(self.configs[stage], path)  # a config it cannot reach fails now
        return {'path': path, 'names': names, 'digest': digest}

    def _batch_given(self, stage: str) -> bool:
        """Whether the user set the training batch of ``stage`` (--cfg-options)."""
        items = self.stage_options.get('*', []) + self.stage_options.get(stage, [])
        return any(it.split('=', 1)[0] == 'train_dataloader.batch_size' for it in items)

    def _train_batch(self, stage: str) -> int:
        """The batch size per rank a training stage will run with (the user's --cfg-options win)."""
        items = self.stage_options.get('*', []) + self.stage_options.get(stage, [])
        given = [it.split('=', 1)[1] for it in items if it.split('=', 1)[0] == 'train_dataloader.batch_size']
        return int(given[-1]) if given else int(load_config(self.configs[stage])['train_dataloader']['batch_size'])

    def _check_folder(self) -> Dict[str, Any]:
        """The image folder of a folder preset: present, outside the work dir, enough images for 2a and for one
        batch per rank of each training stage."""
        if not self.opts.data_root:
            raise PipelineError(f'{self.preset}: --data-root DIR (the folder of images) is required')
        root = osp.abspath(self.opts.data_root)
        if not osp.isdir(root):
            raise PipelineError(f'--data-root {root}: no such folder')
        if osp.commonpath([root, self.work_dir]) == root:
            raise PipelineError(f'the work dir {self.work_dir} is inside the image folder {root}: the pictures the '
                                'run draws would join its images; choose a --work-dir outside it')
        if self.image_list:
            names = self.image_list['names']
            what = f'the image list {self.image_list["path"]} names {len(names)} images'
            missing = [n for n in names if not osp.isfile(osp.join(root, n))]
            if missing:
                raise PipelineError(f'{what}, {len(missing)} of them missing under {root} (first: {missing[0]}); '
                                    '--data-root must be the folder the list was made of')
        else:
            names, _ = load_image_list(root)
            what = f'{root} holds {len(names)} image files (searched recursively for {" ".join(IMG_EXTENSIONS)})'
        k = int((load_config(self.configs['knn']).get('test_evaluator') or {}).get('k', 10))
        needs = []
        if len(names) < k + 1:
            needs.append(f'ORL needs at least {k + 1}: each image is paired with its {k} nearest other images')
        ranks = max(self.opts.gpus, 1)
        for stage in ('stage1', 'stage3'):
            if stage not in self.stages or stage in self.use:
                continue
            batch = self._train_batch(stage)
            # DefaultSampler gives each rank ceil(n / ranks) images; training drops a partial batch.
            need = ranks * (batch - 1) + 1
            fitted = (len(names) - 1) // ranks + 1  # the largest batch one epoch fills on every rank
            if len(names) < need and fitted >= 2 and not self._batch_given(stage):
                # A small folder (a first try on a laptop) trains with the batch it can fill, and says so.
                self.stage_options.setdefault(stage, []).append(f'train_dataloader.batch_size={fitted}')
                self.fitted_batches[stage] = (batch, fitted)
                continue
            if len(names) < need:
                needs.append(f'{stage} needs at least {need} for one batch of train_dataloader.batch_size={batch} '
                             f'per rank on {ranks} rank{"s" if ranks > 1 else ""} (drop_last=True; a smaller batch: '
                             f'--cfg-options {stage}:train_dataloader.batch_size=N)')
        if needs:
            raise PipelineError(f'{what}; ' + '; '.join(needs))
        digest = folder_digest(root, names)
        if self.image_list:
            digest = hashlib.sha256(f'{digest}:{self.image_list["digest"]}'.encode()).hexdigest()[:16]
        return {'root': root, 'num_files': len(names), 'digest': digest}

    # ----------------------------------------------------------------- one stage's command
    def stage_dir(self, stage: str) -> str:
        return osp.join(self.work_dir, stage)

    def _inputs(self, stage: str) -> Tuple[Optional[str], Dict[str, Any]]:
        """(checkpoint, {cfg key: value}) fed from upstream outputs, as the stage's wires say."""
        spec = STAGE_BY_NAME[stage]
        upstream = {d: self.records[d]['outputs'][STAGE_BY_NAME[d].output] for d in spec.deps}
        return wire(spec, upstream, self.stage_dir(stage))

    def data_root_arg(self) -> Optional[str]:
        """The --data-root path the stages are given: the folder itself, or ``<work_dir>/data_root``, a
        link to it, when its path has characters that --cfg-options cannot carry ("My Photos")."""
        if not self.opts.data_root:
            return None
        root = osp.abspath(self.opts.data_root)
        return osp.join(self.work_dir, DATA_LINK) if _NOT_IN_OPTIONS.search(root) else root

    def _link_data_root(self) -> None:
        root, arg = osp.abspath(self.opts.data_root or ''), self.data_root_arg()
        if arg is None or arg == root:
            return
        if osp.islink(arg) and os.readlink(arg) != root:
            os.remove(arg)
        if not osp.islink(arg):
            os.symlink(root, arg)
        self._say(f'the data root {root!r} has characters --cfg-options cannot carry: the stages read it '
                  f'through the link {arg}')

    def _options(self, stage: str, wired: Dict[str, Any]) -> List[str]:
        """The stage's cfg-options: --data-root moves, --schedule, wiring, global then per-stage user items."""
        data_root = self.data_root_arg()
        return stage_options(
            self.configs[stage],
            wired,
            data_root=data_root,
            image_list=self.image_list['path'] if self.image_list and stage != 'finetune' else None,
            schedule=self.schedule.get(stage),
            common=self.stage_options.get('*', []),
            own=self.stage_options.get(stage, []))

    def _fingerprint(self, stage: str, checkpoint: Optional[str], options: List[str]) -> str:
        upstream = {d: self.records[d]['run_id'] for d in STAGE_BY_NAME[stage].deps}
        data = self.folder['digest'] if self.folder else self.image_list['digest'] if self.image_list else None
        return fingerprint(self.configs[stage], checkpoint, options, upstream, data=data)

    def build_command(self, stage: str, checkpoint: Optional[str], options: List[str], resume: bool) -> List[str]:
        """The exact command a user would type for this stage."""
        return self.launcher.command(STAGE_BY_NAME[stage].entry, f'orl-{stage}', self.configs[stage],
                                     self.stage_dir(stage), checkpoint, options, resume)

    def _launch_env(self) -> Dict[str, str]:
        return self.launcher.environ()

    def _run_command(self, cmd: List[str], log_path: str) -> int:
        """Run ``cmd``, teeing its output into ``log_path`` (tests replace this method)."""
        return self.launcher.run(cmd, log_path)

    # ----------------------------------------------------------------- main loop
    def _say(self, msg: str) -> None:
        print(f'[pipeline] {msg}', flush=True)

    def run(self) -> Dict[str, Any]:
        """Run (or skip) every stage in order; returns the summary also written to the work dir."""
        os.makedirs(self.work_dir, exist_ok=True)
        forced = [s for s in self.stages if s in self.forced]
        if self.recipe_reason:
            self._say(f'{FOLDER}: the {self.preset} recipe ({self.recipe_reason}; name folder-cpu or folder-gpu '
                      'to choose)')
        if self.folder:
            self._say(f'{self.label}: {self.folder["num_files"]} image files under {self.folder["root"]}')
        for stage, (batch, fitted) in self.fitted_batches.items():
            self._say(f'{stage}: {self.folder["num_files"]} images make no batch of {batch}; training with batch '
                      f'{fitted} (--cfg-options {stage}:train_dataloader.batch_size=N to choose)')
        self._link_data_root()
        self._say(f'{self.label}: work dir {self.work_dir}; stages: {", ".join(self.stages)}' +
                  (f'; forced: {", ".join(forced)}' if forced else ''))
        for stage in self.stages:
            self._run_stage(stage)
        result = self.summary()
        if not self.opts.dry_run:
            atomic_write_json(osp.join(self.work_dir, SUMMARY_FILE), result, indent=2)
        self._say(self.format_table())
        return result

    def _run_stage(self, stage: str) -> None:
        """Take the stage's output from --use, show its command (--dry-run), skip it (done) or run it."""
        if stage in self.use:
            self._take_given(stage)
            return
        if self.opts.dry_run:
            self._show(stage)
            return
        checkpoint, wired = self._inputs(stage)
        options = self._options(stage, wired)
        fp = self._fingerprint(stage, checkpoint, options)
        if stage not in self.forced and self._skip_if_done(stage, fp):
            return
        wd = self.stage_dir(stage)
        kept = prepare_work_dir(wd, fp, fresh=stage in self.forced)
        resume = kept and STAGE_BY_NAME[stage].output == 'checkpoint' and latest_checkpoint(wd) is not None
        cmd = self.build_command(stage, checkpoint, options, resume=resume)
        record = self._execute(stage, cmd, resume)
        record.update(
            config=self.configs[stage],
            command=cmd,
            fingerprint=fp,
            inputs={'checkpoint': checkpoint, **wired} if checkpoint else dict(wired))
        atomic_write_json(osp.join(wd, DONE_MARKER), record, indent=2)
        self.records[stage] = dict(record, skipped=False)
        self._say(f'{stage}: done in {record["wall_s"]:.1f} s ({record["cpu_s"]:.0f} CPU s); outputs '
                  f'{record["outputs"]}; log {record["log"]}; metrics: {fmt_metrics(record["metrics"])}')

    def _skip_if_done(self, stage: str, fp: str) -> bool:
        done, why = still_done(self.stage_dir(stage), fp)
        if done:
            self.records[stage] = dict(done, skipped=True)
            self._say(f'{stage}: already done ({done.get("finished_at")}), skipped; outputs {done["outputs"]}')
        elif why:
            self._say(f'{stage}: previous result is stale ({why}); running again')
        return done is not None

    def _take_given(self, stage: str) -> None:
        kind = STAGE_BY_NAME[stage].output
        self.records[stage] = provided_record(stage, kind, self.use[stage])
        self._say(f'{stage}: using the given {kind} {self.use[stage]}')

    def _show(self, stage: str) -> None:
        """Print the stage's command, with the upstream outputs it would read by name."""
        spec = STAGE_BY_NAME[stage]
        symbolic = osp.join(self.stage_dir(stage), spec.store or '<latest>.pth')
        self.records[stage] = {'run_id': 'dry-run', 'outputs': {spec.output: symbolic}}
        checkpoint, wired = self._inputs(stage)
        cmd = self.build_command(stage, checkpoint, self._options(stage, wired), resume=False)
        self._say(f'{stage}: {shlex.join(cmd)}')

    def _execute(self, stage: str, cmd: List[str], resume: bool) -> Dict[str, Any]:
        """Run the stage's command; the record of the run (time, output, log, metrics), or PipelineError."""
        wd = self.stage_dir(stage)
        log_path = osp.join(wd, STAGE_LOG)
        self._say(f'{stage} ({STAGE_BY_NAME[stage].title}){" resuming" if resume else ""}: {shlex.join(cmd)}')
        before = set(timestamp_dirs(wd))
        with Stopwatch() as clock:
            rc = self._run_command(cmd, log_path)
        if rc != 0:
            raise PipelineError(f'stage {stage} failed (exit code {rc}) after {clock.wall:.1f} s; full output: '
                                f'{log_path}\n--- last lines ---\n{log_tail(log_path)}')
        outputs = collect_outputs(STAGE_BY_NAME[stage], wd)
        metrics, runner_log = read_new_runs(wd, before)
        return {
            'stage': stage,
            'run_id': uuid.uuid4().hex,
            'finished_at': datetime.datetime.now().isoformat(timespec='seconds'),
            'wall_s': round(clock.wall, 2),
            'cpu_s': round(clock.cpu, 2),
            'outputs': outputs,
            'log': runner_log or log_path,
            'stage_log': log_path,
            'metrics': metrics,
        }

    # ----------------------------------------------------------------- reporting
    def summary(self) -> Dict[str, Any]:
        return summary(self.label, self.work_dir, self.records)

    def format_table(self) -> str:
        return format_table(self.stages, self.records, self.opts.dry_run)
