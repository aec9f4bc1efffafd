"""Launching a stage as a user would: the command line per launcher, its environment, the tee'd run."""
import os
import os.path as osp
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from .stages import PipelineError

ENTRY_SCRIPTS = {'train': 'train.py', 'test': 'test.py', 'det_train': 'det_train.py'}


def with_pythonpath(root: str, env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``env`` (default: this process's environment) with ``root`` first on ``PYTHONPATH``: OpenMMLab's launcher
    convention (``PYTHONPATH="$(dirname $0)/..":$PYTHONPATH``), so that a config's ``custom_imports`` may name a
    module of the repository the tools are in (``projects.*``) in every process it starts."""
    env = dict(os.environ if env is None else env)
    root = osp.abspath(root)
    rest = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p and osp.abspath(p) != root]
    env['PYTHONPATH'] = os.pathsep.join([root] + rest)
    return env


@dataclass(frozen=True)
class Launcher:
    """How stages are started: ``tools/*.py`` directly, through ``tools/dist_*.sh`` (``'pytorch'`` or
    ``gpus > 1``) or through ``tools/slurm_*.sh`` / srun (``'slurm'``)."""

    tools_dir: str
    python: str = sys.executable
    launcher: str = 'none'
    gpus: int = 1
    partition: str = ''
    srun_args: str = ''
    env: Optional[Dict[str, str]] = None
    quiet: bool = False

    def script(self, entry: str) -> str:
        path = osp.join(self.tools_dir, ENTRY_SCRIPTS[entry])
        if not osp.isfile(path):
            raise PipelineError(f'entry point {path} not found (set tools_dir / run from a checkout)')
        return path

    def command(self, entry: str, job: str, config: str, work_dir: str, checkpoint: Optional[str], options: List[str],
                resume: bool) -> List[str]:
        """The exact command a user would type for one stage."""
        script = self.script(entry)
        pos = [config]
        tail = ['--work-dir', work_dir]
        if entry == 'det_train':
            if checkpoint:
                tail += ['--pretrained', checkpoint]
        elif checkpoint:
            pos.append(checkpoint)
        if resume:
            tail.append('--resume')
        if options:
            tail += ['--cfg-options'] + options
        if self.launcher == 'slurm':
            return self._slurm(entry, script, job, config, work_dir, checkpoint, pos, tail)
        if self.launcher == 'pytorch' or self.gpus > 1:
            return self._dist(entry, script, config, checkpoint, pos, tail)
        return [self.python, script] + pos + tail

    def _slurm(self, entry: str, script: str, job: str, config: str, work_dir: str, checkpoint: Optional[str],
               pos: List[str], tail: List[str]) -> List[str]:
        # tools/slurm_{train,test}.sh PARTITION JOB_NAME CONFIG (WORK_DIR | CHECKPOINT) [options];
        # GPUS / GPUS_PER_NODE / SRUN_ARGS / PYTHON come through the environment (environ()).
        if not self.partition:
            raise PipelineError('--launcher slurm needs --partition')
        if entry == 'test':
            sh = osp.join(self.tools_dir, 'slurm_test.sh')
            return ['bash', sh, self.partition, job, config, checkpoint or 'none'] + tail
        if entry == 'train':  # slurm_train.sh takes WORK_DIR as a positional argument
            sh = osp.join(self.tools_dir, 'slurm_train.sh')
            return ['bash', sh, self.partition, job, config, work_dir] + tail[2:]
        # det_train.py has no slurm script of its own: the same srun line as slurm_train.sh.
        per_node = min(self.gpus, 8)
        return ([
            'srun', '-p', self.partition, f'--job-name={job}', f'--gres=gpu:{per_node}', f'--ntasks={self.gpus}',
            f'--ntasks-per-node={per_node}', '--cpus-per-task=5', '--kill-on-bad-exit=1'
        ] + shlex.split(self.srun_args) + [self.python, '-u', script] + pos + ['--launcher', 'slurm'] + tail)

    def _dist(self, entry: str, script: str, config: str, checkpoint: Optional[str], pos: List[str],
              tail: List[str]) -> List[str]:
        # tools/dist_train.sh CONFIG GPUS [options]; tools/dist_test.sh CONFIG CHECKPOINT GPUS [options]
        # ('none' when the step needs no weights).
        if entry == 'test':
            sh = osp.join(self.tools_dir, 'dist_test.sh')
            return ['bash', sh, config, checkpoint or 'none', str(self.gpus)] + tail
        if entry == 'train':
            sh = osp.join(self.tools_dir, 'dist_train.sh')
            return ['bash', sh, config, str(self.gpus)] + tail
        # det_train.py: torchrun exactly as dist_train.sh runs train.py.
        port = os.environ.get('PORT', '29500')
        return ([
            self.python, '-m', 'torch.distributed.run', f'--nproc_per_node={self.gpus}', f'--master_port={port}', script
        ] + pos + ['--launcher', 'pytorch'] + tail)

    def environ(self) -> Dict[str, str]:
        """The environment of a stage's processes: the repository of ``tools_dir`` first on ``PYTHONPATH``
        (:func:`with_pythonpath`, for the single-process launch too), the pipeline's interpreter as ``PYTHON``."""
        env = with_pythonpath(osp.dirname(osp.abspath(self.tools_dir)), self.env)
        env.setdefault('PYTHONUNBUFFERED', '1')
        # The launcher scripts run ``$PYTHON``: the interpreter the pipeline itself runs with.
        env.setdefault('PYTHON', self.python)
        if self.launcher == 'slurm':
            env['GPUS'] = str(self.gpus)
            env.setdefault('GPUS_PER_NODE', str(min(self.gpus, 8)))
            if self.srun_args:
                env['SRUN_ARGS'] = self.srun_args
        return env

    def run(self, cmd: List[str], log_path: str) -> int:
        """Run ``cmd``, teeing its output into ``log_path`` (and the console unless quiet)."""
        env = self.environ()
        with open(log_path, 'a') as log:
            log.write(f'$ {shlex.join(cmd)}\n')
            log.flush()
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors='replace', bufsize=1)
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    log.write(line)
                    if not self.quiet:
                        sys.stdout.write(line)
                        sys.stdout.flush()
            except KeyboardInterrupt:
                proc.terminate()
                proc.wait()
                raise
            return proc.wait()


class Stopwatch:
    """Wall seconds and CPU seconds of the child processes (all ranks on this node) of a ``with`` block."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> 'Stopwatch':
        self._t0 = time.time()
        self._ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.time() - self._t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (ru1.ru_utime - self._ru0.ru_utime) + (ru1.ru_stime - self._ru0.ru_stime)


def log_tail(path: str, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''
