"""Any data set size trains: a last batch of one image never reaches a BatchNorm1d, and a data set too
small for one batch per rank stops before training with one line saying what it needs."""
import glob
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import BYOL_SYNTHETIC_CONFIG, ROOT, tiny_byol_overrides
from mmengine.config import Config
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import DataLoader

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.utils.error_policy import run_cli
from orl_plugin.utils.stack_fixes import dataloader as stack_fix

# Every pre-training config (stage 1, stage 3, the instrument of projects/orl_evidence): every schedule is
# named coslr.
PRETRAINING = sorted(
    p for pattern in ('configs/**/*coslr*.py', 'projects/*/configs/**/*coslr*.py')
    for p in glob.glob(osp.join(ROOT, pattern), recursive=True) if '_base_' not in p)


def _train_tool():
    spec = importlib.util.spec_from_file_location('orl_tools_train', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def five_scenes(tmp_path_factory) -> str:
    """Synthetic scenes with 5 training images (and 1 held out), 64 px."""
    out = str(tmp_path_factory.mktemp('five_scenes'))
    make_synthetic_scenes(out, num_images=6, seed=0, img_size=(64, 64), workers=1)
    return out


def test_five_images_in_batches_of_four_train_to_the_end(five_scenes, tmp_path, one_thread):
    """5 images, batch 4: a last batch of one crashed BatchNorm ('Expected more than 1 value per channel
    when training') at the end of epoch 1; the partial batch is dropped now, so both epochs run."""
    cfg = Config.fromfile(BYOL_SYNTHETIC_CONFIG)
    cfg.merge_from_dict(tiny_byol_overrides(five_scenes, max_epochs=2, batch_size=4))
    cfg.merge_from_dict(dict(work_dir=str(tmp_path / 'work'), log_level='WARNING', custom_hooks=[]))
    runner = Runner.from_cfg(cfg)
    assert len(runner.train_dataloader.dataset) == 5
    runner.train()
    assert runner.epoch == 2 and runner.iter == 2
    assert np.isfinite(runner.message_hub.get_scalar('train/loss').current())


def test_a_folder_too_small_for_one_batch_stops_with_one_line(tmp_path, capsys):
    folder = tmp_path / 'three'
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((48, 48, 3), 40 * i, np.uint8)).save(folder / f'{i}.jpg')
    argv = [
        BYOL_SYNTHETIC_CONFIG, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'train_dataloader.dataset.ann_file=',
        f'train_dataloader.dataset.data_prefix.img_path={folder}', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'custom_hooks=[]'
    ]
    with pytest.raises(SystemExit) as exit_:
        run_cli(_train_tool().main, argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        'error: SceneImageDataset: 3 training images make no batch of 4 per rank (train_dataloader.batch_size=4 '
        'on 1 rank, drop_last=True): it needs at least 4 images; add images or lower train_dataloader.batch_size '
        '(--debug shows the traceback)'
    ]


@pytest.mark.parametrize('round_up', [True, False])
def test_images_needed_per_rank(round_up, monkeypatch):
    """Batch 4 on the last of 2 ranks: the number the message names is the smallest data set that makes a
    batch (7 when DefaultSampler pads the ranks to ceil(n / 2) images, 8 without padding)."""
    import mmengine.dataset.sampler as sampler_module
    monkeypatch.setattr(sampler_module, 'get_dist_info', lambda: (1, 2))
    monkeypatch.setattr(stack_fix, 'get_dist_info', lambda: (1, 2))
    needs = set()
    for n in range(1, 12):
        loader = DataLoader(
            list(range(n)),
            batch_size=4,
            sampler=DefaultSampler(list(range(n)), shuffle=False, round_up=round_up),
            drop_last=True,
            collate_fn=pseudo_collate)
        if len(loader):
            stack_fix.check_makes_a_batch(loader)
            assert n >= max(needs)
            break
        with pytest.raises(stack_fix.NoBatchError, match='on 2 ranks, drop_last=True') as err:
            stack_fix.check_makes_a_batch(loader)
        needs.add(int(str(err.value).split('at least ')[1].split()[0]))
    assert needs == {7 if round_up else 8} and n == needs.pop()


def _one_image_step(cfg: Config) -> None:
    """A training forward and backward of the config's model on a batch of one 64 px image."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.train()
    data = dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)], data_samples=[DataSample().set_gt_label(0)])
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()


@pytest.mark.parametrize('path', PRETRAINING, ids=lambda p: osp.relpath(p, ROOT))
def test_no_pretraining_config_meets_a_batch_of_one(path):
    """Every pre-training config either drops its partial last batch or trains on a batch of one image
    (the instrument: a classifier without BatchNorm1d, whose 64 px crops leave 2x2 res5 maps)."""
    cfg = Config.fromfile(path)
    assert 'train_dataloader' in cfg, path
    if cfg.train_dataloader.get('drop_last', False):
        return
    _one_image_step(cfg)
