"""Multi-node launching on one machine: two 'nodes' of one process each, started through
tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT) and through tools/slurm_train.sh (under a
stand-in ``srun`` that starts the tasks locally with slurm's variables), train exactly as one node with
two processes: the same losses and the same weights after two iterations (CPU, gloo)."""
import json
import os
import os.path as osp
import socket
import stat
import subprocess
import sys
import textwrap

import torch
from helpers import BYOL_SYNTHETIC_CONFIG, ROOT, tiny_byol_overrides

# slurm's view of a job: what the stand-in srun gives each task (mmengine's slurm launcher reads them).
FAKE_SRUN = textwrap.dedent(f'''\
    #!{sys.executable}
    """srun stand-in: run --ntasks copies of the command here, --ntasks-per-node per 'node'."""
    import os, subprocess, sys
    args, ntasks, per_node = sys.argv[1:], 1, 1
    while args and args[0].startswith('-'):
        opt = args.pop(0)
        if opt == '-p':
            args.pop(0)
        elif opt.startswith('--ntasks='):
            ntasks = int(opt.split('=')[1])
        elif opt.startswith('--ntasks-per-node='):
            per_node = int(opt.split('=')[1])
    procs = []
    for task in range(ntasks):
        env = dict(os.environ, SLURM_PROCID=str(task), SLURM_NTASKS=str(ntasks), SLURM_LOCALID=str(task % per_node),
                   SLURM_NODEID=str(task // per_node), SLURM_NNODES=str(-(-ntasks // per_node)),
                   SLURM_NODELIST='localhost')
        procs.append(subprocess.Popen(args, env=env))
    sys.exit(max(p.wait() for p in procs))
    ''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _options(data_root: str) -> list:
    """Two iterations of a slim CPU BYOL: 8 images, 2 ranks x batch 2, gloo, a loss logged every iteration."""
    options = tiny_byol_overrides(data_root, max_epochs=1, batch_size=2)
    options.update({
        'env_cfg.dist_cfg.backend': 'gloo',
        'train_dataloader.dataset.ann_file': 'annotations/instances.json',
        'model.backbone.base_channels': 16,
        'model.backbone.stem_channels': 16,
        'model.neck.in_channels': 128,
        'custom_hooks': '[]',
        'log_level': 'INFO',
    })
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    env.pop('MASTER_ADDR', None)
    env.pop('MASTER_PORT', None)
    env.update(extra)
    return env


def _wait(procs, timeout=240) -> str:
    out = ''
    for p in procs:
        text, _ = p.communicate(timeout=timeout)
        out += text
    for p in procs:
        assert p.returncode == 0, out[-4000:]
    return out


def _start(cmd, env) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _result(work_dir: str):
    """(losses per iteration, weights) of the run in ``work_dir`` (rank 0 writes both)."""
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2
    (scalars, ) = [osp.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs if f == 'scalars.json']
    with open(scalars) as f:
        losses = [(r['step'], r['loss']) for r in map(json.loads, f) if 'loss' in r]
    assert [step for step, _ in losses] == [1, 2]
    return losses, ckpt['state_dict']


def test_two_nodes_train_as_one(tmp_path, synthetic_scenes):
    options = _options(synthetic_scenes['out_dir'])
    train = [BYOL_SYNTHETIC_CONFIG]
    dist = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh')]
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'srun').chmod(stat.S_IRWXU)
    # The three jobs run side by side (their start-up, not their two iterations, is most of the time).
    port = str(_free_port())
    runs = {
        'one_node': [
            _start(dist + train + ['2', '--work-dir', str(tmp_path / 'one_node')] + options,
                   _env(PORT=str(_free_port())))
        ],
        'two_nodes': [
            _start(dist + train + ['1', '--work-dir', str(tmp_path / f'node{rank}')] + options,
                   _env(NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1', PORT=port)) for rank in (0, 1)
        ],
        'slurm': [
            _start(['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'cpu', 'orl-two-nodes'] + train +
                   [str(tmp_path / 'slurm')] + options,
                   _env(
                       PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                       GPUS='2',
                       GPUS_PER_NODE='1',
                       MASTER_ADDR='127.0.0.1',
                       MASTER_PORT=str(_free_port())))
        ],
    }
    logs = {name: _wait(procs) for name, procs in runs.items()}
    for name, log in logs.items():
        assert 'Distributed training: True' in log and 'GPU number: 2' in log, (name, log[-3000:])
    # each 'node' started one process: 'GPU number: 2' is their rendezvous through MASTER_ADDR and PORT
    assert '--launcher=slurm' in logs['slurm']

    losses, weights = _result(str(tmp_path / 'one_node'))
    for other in ('node0', 'slurm'):
        other_losses, other_weights = _result(str(tmp_path / other))
        assert other_losses == losses, other
        assert other_weights.keys() == weights.keys()
        for key, value in weights.items():
            assert torch.equal(other_weights[key], value), (other, key)
