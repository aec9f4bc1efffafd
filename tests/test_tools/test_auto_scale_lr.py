"""The learning rate a user gets: every pre-training config states the total batch its lr is for, and
tools/train.py --auto-scale-lr scales it as mmpretrain's train.py and mmengine's Runner do. The table of
docs/en/user_guides/running_at_scale.md is checked against what the Runner computes."""
import copy
import functools
import glob
import importlib.util
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner

from orl_plugin.utils.error_policy import InputError

GPUS = (1, 4, 8, 16, 64)
DOC = osp.join(ROOT, 'docs', 'en', 'user_guides', 'running_at_scale.md')
# Every pre-training config (every schedule is named coslr), relative to configs/; and the measuring
# instrument's, which projects/orl_evidence ships.
PRETRAINING = sorted(
    osp.relpath(p, osp.join(ROOT, 'configs'))
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*coslr*.py'), recursive=True) if '_base_' not in p)
PROJECTS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '**', '*coslr*.py'), recursive=True)
    if '_base_' not in p)
# The rows of the doc's table: its first cell names the config, the others share its learning rate.
# ``rule``: the paper's rule for the total batch, where the paper states one.
ROWS = {
    'byol_resnet50_8xb64-coslr-800e_coco.py': dict(
        members=r'(byol|orl)_resnet50_8xb64-', rule=lambda batch: 0.4 * batch / 512),
    'mocov2_resnet50_8xb32-coslr-800e_coco.py': dict(
        members=r'mocov2_resnet50_8xb32-', rule=lambda batch: 0.03 * batch / 256),
    'orl-mocov2_resnet50_8xb64-coslr-800e_coco.py': dict(
        members=r'orl-mocov2_resnet50_8xb64-', rule=lambda batch: 0.03 * batch / 256),
    'byol_resnet18_1xb32-coslr-30e_synthetic.py': dict(members=r'byol_resnet18_1xb32-', rule=None),
    'orl_resnet18_1xb16-coslr-30e_synthetic.py': dict(members=r'orl_resnet18_1xb16-', rule=None),
    'mocov2_resnet18_1xb32-coslr-30e_synthetic.py': dict(members=r'^mocov2/mocov2_resnet18_1xb32-', rule=None),
    'orl-mocov2_resnet18_1xb32-coslr-30e_synthetic.py': dict(members=r'orl-mocov2_resnet18_1xb32-', rule=None),
}


def _train_tool():
    spec = importlib.util.spec_from_file_location('orl_tools_train', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def train_tool():
    return _train_tool()


@pytest.fixture(autouse=True)
def local_rank(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')  # train.py's parse_args sets it when absent


@functools.lru_cache(maxsize=None)
def _config(path: str) -> Config:
    return Config.fromfile(path)


def resolved_lr(train_tool, config: str, world_size: int, argv=()) -> float:
    """The lr the optimizer starts from when ``config`` runs through tools/train.py ``argv`` on
    ``world_size`` ranks: the Runner's own ``scale_lr`` on the config train.py merged."""
    path = osp.join(ROOT, 'configs', config)
    cfg = train_tool.merge_args(copy.deepcopy(_config(path)), train_tool.parse_args([path, *argv]))
    # AmpOptimWrapper needs a GPU; the lr is the optimizer's either way.
    param = torch.nn.Parameter(torch.zeros(1))
    wrapper = OptimWrapper(torch.optim.SGD([param], lr=cfg.optim_wrapper.optimizer.lr))
    runner = SimpleNamespace(
        _train_dataloader=cfg.train_dataloader,
        world_size=world_size,
        logger=MMLogger.get_current_instance(),
        param_schedulers=None)
    Runner.scale_lr(runner, wrapper, cfg.get('auto_scale_lr'))
    return wrapper.optimizer.param_groups[0]['lr']


@pytest.mark.parametrize('config', [osp.join('configs', c) for c in PRETRAINING] + PROJECTS, ids=str)
def test_every_pretraining_config_states_its_total_batch(config):
    """base_batch_size is the batch the config's name promises: GPUs x batch per GPU."""
    cfg = _config(osp.join(ROOT, config))
    gpus, batch = map(int, re.search(r'_(\d+)xb(\d+)-', osp.basename(config)).groups())
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr.base_batch_size == gpus * batch
    assert not cfg.auto_scale_lr.get('enable', False)  # off unless asked for, as in mmpretrain


def test_auto_scale_lr_through_train_py(train_tool):
    """Without the flag the lr is the config's on any number of GPUs; with it, lr x total / base."""
    config = 'byol/byol_resnet50_8xb64-coslr-800e_coco.py'
    assert [resolved_lr(train_tool, config, n) for n in GPUS] == [0.4] * 5
    assert [resolved_lr(train_tool, config, n, ['--auto-scale-lr']) for n in GPUS] == \
        pytest.approx([0.05, 0.2, 0.4, 0.8, 3.2])
    # the batch given on the command line counts: 4 GPUs x 128 = 512, the paper's batch
    options = ['--auto-scale-lr', '--cfg-options', 'train_dataloader.batch_size=128']
    assert resolved_lr(train_tool, config, 4, options) == pytest.approx(0.4)
    assert resolved_lr(train_tool, 'mocov2/mocov2_resnet50_8xb32-coslr-800e_coco.py', 1, ['--auto-scale-lr']) == \
        pytest.approx(0.00375)


def test_auto_scale_lr_needs_a_base_batch(train_tool, tmp_path):
    cfg = tmp_path / 'no_base.py'
    cfg.write_text("optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))\n"
                   'train_dataloader = dict(batch_size=2)\n')
    args = train_tool.parse_args([str(cfg), '--auto-scale-lr'])
    with pytest.raises(InputError, match='no_base.py has no auto_scale_lr.base_batch_size'):
        train_tool.merge_args(Config.fromfile(str(cfg)), args)


def _doc_rows() -> dict:
    """The doc's table as {config: {row label: [value per GPU count]}}."""
    rows: dict = {}
    current = None
    with open(DOC) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if len(cells) != 2 + len(GPUS) or not line.startswith('|'):
                continue
            named = re.search(r'`([^`]+\.py)`', cells[0])
            if named:
                current = named.group(1)
                rows[current] = {}
            if current is None or not re.match(r'^[\d.,]+$', cells[2]):
                continue
            rows[current][cells[1]] = [float(c.replace(',', '')) for c in cells[2:]]
    return rows


def test_the_documented_table_is_what_users_get(train_tool):
    rows = _doc_rows()
    assert set(rows) == set(ROWS)
    covered = set()
    for named, spec in ROWS.items():
        doc = rows[named]
        members = [c for c in PRETRAINING if re.search(spec['members'], c)]
        assert any(osp.basename(c) == named for c in members), named
        covered |= set(members)
        for config in members:
            cfg = _config(osp.join(ROOT, 'configs', config))
            assert doc['total batch'] == [n * cfg.train_dataloader.batch_size for n in GPUS], config
            assert doc['lr'] == pytest.approx([resolved_lr(train_tool, config, n) for n in GPUS]), config
            assert doc['lr with --auto-scale-lr'] == pytest.approx(
                [resolved_lr(train_tool, config, n, ['--auto-scale-lr']) for n in GPUS]), config
        if spec['rule'] is not None:
            assert doc["the paper's rule"] == pytest.approx([spec['rule'](b) for b in doc['total batch']])
            assert doc['lr with --auto-scale-lr'] == pytest.approx(doc["the paper's rule"])
        else:
            assert "the paper's rule" not in doc
    # every pre-training config under configs/ is in the table
    assert set(PRETRAINING) == covered
