"""The entry points as users run them: tools/dist_train.sh (2 CPU processes, gloo) and mim."""
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from helpers import BYOL_SYNTHETIC_CONFIG, ROOT, tiny_byol_overrides

BIN = osp.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ)
    # The venv's executables (python, mim) first, as with an activated environment.
    env['PATH'] = BIN + os.pathsep + env.get('PATH', '')
    env['PYTHON'] = sys.executable
    env['OMP_NUM_THREADS'] = '1'
    env.update(extra)
    return env


def _run(cmd, env, timeout=120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, \
        f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    return proc


def _cfg_options(data_root: str, batch_size: int, keep=()) -> list:
    """The tiny overrides as ``--cfg-options`` words, except the keys in ``keep``."""
    options = tiny_byol_overrides(data_root, max_epochs=1, batch_size=batch_size)
    options['log_level'] = 'INFO'
    return [f'{key}={value}' for key, value in options.items() if key not in keep]


def test_dist_train_two_cpu_processes(tmp_path, synthetic_scenes):
    work_dir = str(tmp_path / 'work')
    proc = _run(
        [
            'bash',
            'tools/dist_train.sh',
            BYOL_SYNTHETIC_CONFIG,
            '2',
            '--work-dir',
            work_dir,
            '--cfg-options',
            'env_cfg.dist_cfg.backend=gloo',
            # all 8 images: 4 per rank, 2 full batches (BN needs more than one sample)
            'train_dataloader.dataset.ann_file=annotations/instances.json',
            *_cfg_options(synthetic_scenes['out_dir'], batch_size=2)
        ],
        env=_env(PORT=str(_free_port())))
    log = proc.stdout + proc.stderr
    # Really two ranks: 8 images / (2 ranks x batch 2) = 2 iterations per epoch.
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-3000:]
    assert 'Epoch(train) [1][2/2]' in log, log[-3000:]
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 2


def test_mim_train_cpu(tmp_path, synthetic_scenes):
    mim = shutil.which('mim', path=BIN)
    if mim is None:
        pytest.fail('openmim is not installed (it is part of the `tests` extra)')
    work_dir = str(tmp_path / 'work')
    # mmpretrain's train.py sets persistent_workers=True: left as is, with num_workers=0.
    proc = _run([
        mim, 'train', 'mmpretrain', BYOL_SYNTHETIC_CONFIG, '--gpus', '0', '--work-dir', work_dir, '--auto-scale-lr',
        '--cfg-options',
        *_cfg_options(synthetic_scenes['out_dir'], batch_size=3, keep=('train_dataloader.persistent_workers', ))
    ],
                env=_env())
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [1][2/2]' in log, log[-3000:]
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 2
    # --auto-scale-lr with the config's base_batch_size: lr 0.05 for 32, so 0.05 x 3 / 32 for batch 3
    assert 'LR is set based on batch size of 32 and the current batch size is 3' in log
    assert ckpt['optimizer']['param_groups'][0]['initial_lr'] == pytest.approx(0.05 * 3 / 32)


def _load_tool(name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'orl_tools_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(module, argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [f'{module.__name__}.py', *argv])
    return module.parse_args()


def test_train_args_to_config(monkeypatch):
    from mmengine.config import Config
    train = _load_tool('train')

    def cfg() -> Config:
        return Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))

    out = train.merge_args(cfg(), _parse(train, ['configs/x/my_cfg.py'], monkeypatch))
    assert out.work_dir == osp.join('./work_dirs', 'my_cfg') and out.launcher == 'none'
    assert not out.get('resume', False)

    out = train.merge_args(cfg(), _parse(train, ['c.py', '--resume'], monkeypatch))
    assert out.resume is True and out.load_from is None  # latest checkpoint in work_dir
    out = train.merge_args(cfg(), _parse(train, ['c.py', '--resume', 'w/epoch_2.pth'], monkeypatch))
    assert out.resume is True and out.load_from == 'w/epoch_2.pth'

    args = _parse(
        train,
        ['c.py', '--amp', '--work-dir', 'wd', '--launcher', 'pytorch', '--cfg-options', 'optim_wrapper.loss_scale=512'],
        monkeypatch)
    out = train.merge_args(cfg(), args)
    assert out.optim_wrapper.type == 'AmpOptimWrapper' and out.optim_wrapper.loss_scale == 512
    assert out.work_dir == 'wd' and out.launcher == 'pytorch'
    assert 'auto_scale_lr' not in out

    with_base = Config(dict(cfg().to_dict(), auto_scale_lr=dict(base_batch_size=512)))
    out = train.merge_args(with_base, _parse(train, ['c.py'], monkeypatch))
    assert not out.auto_scale_lr.get('enable', False)
    out = train.merge_args(with_base, _parse(train, ['c.py', '--auto-scale-lr'], monkeypatch))
    assert out.auto_scale_lr == dict(base_batch_size=512, enable=True)


def test_test_args_to_config(monkeypatch):
    from mmengine.config import Config
    test = _load_tool('test')
    out = test.merge_args(Config(dict(load_from='from_config.pth')), _parse(test, ['configs/x/mine.py'], monkeypatch))
    assert out.load_from == 'from_config.pth' and out.work_dir == osp.join('./work_dirs', 'mine')
    out = test.merge_args(
        Config(dict()),
        _parse(test, ['c.py', 'stage1.pth', '--cfg-options', 'test_dataloader.batch_size=2'], monkeypatch))
    assert out.load_from == 'stage1.pth' and out.test_dataloader.batch_size == 2
    # `mim test` insists on a checkpoint: "none" stands for none (as in tools/dist_test.sh)
    out = test.merge_args(Config(dict()), _parse(test, ['c.py', 'none'], monkeypatch))
    assert out.get('load_from') is None
