"""The training monitors: the COCO object probe, the collapse monitor, the NaN guard and the TensorBoard switch."""
import importlib.util
import json
import logging
import os
import os.path as osp
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from PIL import Image

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.engine.hooks import CocoObjectProbeHook, CollapseMonitorHook, NaNGuardHook, NonFiniteLossError
from orl_plugin.engine.hooks.nan_guard_hook import nonfinite_terms

PREPROCESSOR = dict(
    type='SelfSupDataPreprocessor', mean=[0., 0., 0.], std=[1., 1., 1.], to_rgb=True, _scope_='mmpretrain')


class _Scalars:
    """A visualiser stand-in that keeps what the hooks log."""

    def __init__(self):
        self.logged = []

    def add_scalars(self, scalars, step=0):
        self.logged.append((step, dict(scalars)))


class _Lines(logging.Handler):

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def runner_stub():
    """A runner with the attributes the hooks read, and the log lines they write."""
    logger = MMLogger.get_instance(f'monitor_test_{np.random.randint(1 << 30)}', log_level='INFO')
    lines = _Lines()
    logger.addHandler(lines)
    runner = SimpleNamespace(logger=logger, visualizer=_Scalars(), epoch=0, iter=0, model=None)
    yield runner, lines
    logger.removeHandler(lines)


def _text(lines, level=None):
    return [r.getMessage() for r in lines.records if level is None or r.levelno == level]


# ----------------------------------------------------------------------------- the COCO object probe
class _ColourNet(BaseModel):
    """Backbone output = the image itself, so the pooled feature is a crop's mean colour (RGB)."""

    def __init__(self):
        super().__init__(data_preprocessor=PREPROCESSOR)
        self.backbone = nn.Identity()
        self.unused = nn.Parameter(torch.zeros(1))  # the probe reads the device from the parameters

    def extract_feat(self, x):
        return (self.backbone(x), )

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.extract_feat(inputs)


# Hand-made scenes on grey: 24 px boxes of pure colours; categories are named by their colour.
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
SCENES = [  # (colour, x, y[, side, crowd])
    [(RED, 4, 4), (GREEN, 34, 4)],
    [(RED, 4, 34), (BLUE, 34, 34)],
    [(GREEN, 4, 4), (BLUE, 34, 4), (RED, 40, 40, 8)],  # the last one is under min_side
    [(RED, 34, 34), (GREEN, 4, 34)],
    [(YELLOW, 4, 4), (YELLOW, 34, 34)],  # the only yellow objects: both in one image
    [(BLUE, 4, 4), (RED, 34, 34, 24, True)],  # the red one is a crowd box
]
CATEGORIES = {RED: 1, GREEN: 2, BLUE: 3, YELLOW: 4}


@pytest.fixture(scope='module')
def hand_made_coco(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp('hand_made_coco')
    os.makedirs(root / 'images')
    images, anns = [], []
    for i, objects in enumerate(SCENES):
        img = np.full((64, 64, 3), 128, np.uint8)
        for obj in objects:
            colour, x, y, side, crowd = tuple(obj) + (24, False)[len(obj) - 3:]
            img[y:y + side, x:x + side] = colour
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i + 1,
                    category_id=CATEGORIES[colour],
                    bbox=[x, y, side, side],
                    area=side * side,
                    iscrowd=int(crowd)))
        Image.fromarray(img).save(root / 'images' / f'{i}.png')  # lossless: the colours stay pure
        images.append(dict(id=i + 1, file_name=f'{i}.png', width=64, height=64))
    categories = [dict(id=v, name=str(k)) for k, v in CATEGORIES.items()]
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=categories), f)
    return str(root)


def _probe(root, **kwargs):
    dataset = dict(type='SceneImageDataset', data_root=root, ann_file='ann.json', data_prefix=dict(img_path='images/'))
    return CocoObjectProbeHook(dataset=dataset, crop_size=16, min_side=16, k=1, **kwargs)


@pytest.mark.parametrize('max_per_class,expected', [(0, (9, 11)), (2, (6, 8))])
def test_probe_gives_the_expected_top1_on_hand_made_crops(hand_made_coco, runner_stub, max_per_class, expected):
    """11 objects pass (the 8 px box and the crowd box do not). Each crop's nearest crop of another
    image has its colour, except the two yellow ones, whose only yellow neighbour is in their own
    image and may not vote: top-1 9 / 11 (with 2 per class: 6 / 8)."""
    runner, lines = runner_stub
    runner.model = _ColourNet()
    hook = _probe(hand_made_coco, max_per_class=max_per_class)
    hook.before_train(runner)
    (step, scalars), = runner.visualizer.logged
    correct, total = expected
    assert scalars['probe/coco_object_knn_top1'] == pytest.approx(correct / total)
    assert scalars['probe/coco_object_knn_top1_init'] == scalars['probe/coco_object_knn_top1']
    assert scalars['probe/coco_object_knn_chance'] == pytest.approx((3 if not max_per_class else 2) / total)
    assert any(f'on {total} objects of 4 classes' in t for t in _text(lines, logging.INFO))
    assert not _text(lines, logging.WARNING)


def test_probe_with_own_image_neighbours_would_score_more(hand_made_coco):
    """The leave-one-image-out rule is what the 9 / 11 above measures: with crops of their own image
    allowed to vote, the yellow objects find each other."""
    from orl_plugin.datasets.scene_dataset import scene_data_infos
    from orl_plugin.evaluation.object_probe import class_balanced_crops, encode_in_eval_mode, knn_classify
    crops, labels, _ = class_balanced_crops(
        scene_data_infos(_probe(hand_made_coco).dataset_cfg), 0, size=16, min_side=16)
    (feats, ) = encode_in_eval_mode(_ColourNet(), crops)
    pred = knn_classify(feats, torch.from_numpy(labels), feats, 4, k=2, temperature=0.07)  # k=2: itself, next
    assert float((pred.numpy() == labels).mean()) == 1.0


def test_probe_without_annotation_file_says_so_once_and_training_goes_on(tmp_path, runner_stub):
    runner, lines = runner_stub
    hook = CocoObjectProbeHook(dataset=dict(type='SceneImageDataset', data_root=str(tmp_path), ann_file='none.json'))
    hook.before_train(runner)
    runner.epoch = 0
    hook.after_train_epoch(runner)
    (warning, ) = _text(lines, logging.WARNING)
    assert 'COCO object probe turned off' in warning and osp.join(str(tmp_path), 'none.json') in warning
    assert 'training goes on' in warning
    assert not runner.visualizer.logged
    # the default is COCO val2017
    assert CocoObjectProbeHook().ann_file == 'data/coco/annotations/instances_val2017.json'


# ----------------------------------------------------------------------------- the collapse monitor
@MODELS.register_module(force=True)
class _TinyBackbone(nn.Module):

    def forward(self, x):
        return (nn.functional.avg_pool2d(x, 4), )  # (N, 3, 4, 4)


@MODELS.register_module(force=True)
class _TinyProjector(nn.Module):
    """A random linear projector; ``collapsed``: of rank 1 (every output on one line)."""

    def __init__(self, collapsed=False):
        super().__init__()
        self.fc = nn.Linear(48, 32)
        if collapsed:
            with torch.no_grad():
                self.fc.weight.copy_(torch.randn(32, 1) @ torch.randn(1, 48))
                self.fc.bias.zero_()

    def forward(self, x):
        return (self.fc(x[0].flatten(1)), )


class _TinySelfSup(BaseSelfSupervisor):

    def loss(self, inputs, data_samples, **kwargs):
        raise NotImplementedError


def _monitor_run(runner, collapsed, checks=5, **kwargs):
    torch.manual_seed(0)
    # The tiny parts are in mmpretrain's registry; an earlier test may leave another scope current.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        runner.model = _TinySelfSup(
            backbone=dict(type='_TinyBackbone'),
            neck=dict(type='_TinyProjector', collapsed=collapsed),
            data_preprocessor=PREPROCESSOR)
    hook = CollapseMonitorHook(interval=2, num_samples=48, min_rank=2.0, patience=2, **kwargs)
    g = torch.Generator().manual_seed(1)
    for it in range(2 * checks):
        runner.iter = it
        batch = dict(inputs=[torch.randint(0, 256, (16, 3, 16, 16), generator=g, dtype=torch.uint8)] * 2)
        hook.after_train_iter(runner, it, batch, None)
    return hook


def test_rank_monitor_warns_on_a_collapsed_batch_and_not_on_a_random_one(runner_stub):
    runner, lines = runner_stub
    hook = _monitor_run(runner, collapsed=False)
    # the fixed batch (48 samples) is complete at iteration 3: checks then, and every 2 iterations
    assert [it for it, _ in hook.history] == [3, 4, 6, 8, 10]
    assert all(r > 10 for _, r in hook.history), hook.history  # random features spread over many directions
    assert [s for s, _ in runner.visualizer.logged] == [3, 4, 6, 8, 10]
    assert not _text(lines, logging.WARNING)

    runner.visualizer.logged.clear()
    hook = _monitor_run(runner, collapsed=True)
    assert all(r == pytest.approx(1.0, abs=1e-3) for _, r in hook.history), hook.history
    (warning, ) = _text(lines, logging.WARNING)  # once per stretch, after `patience` checks
    assert 'below 2 for 2 checks (iterations 3-4' in warning and 'collapsing' in warning
    assert runner.visualizer.logged[0][1]['monitor/projector_rank'] == pytest.approx(1.0, abs=1e-3)


def test_rank_monitor_keeps_the_batch_fixed_and_the_model_state(runner_stub):
    runner, _ = runner_stub
    hook = _monitor_run(runner, collapsed=False, checks=3)
    held = torch.cat(hook._views)
    assert held.shape == (48, 3, 16, 16)  # the first 48 samples (3 batches), then no more
    assert [it for it, _ in hook.history] == [3, 4, 6]
    model = runner.model
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = hook.rank(model)
    assert hook.rank(model) == first and model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# ----------------------------------------------------------------------------- the NaN guard
class _ToyLossModel(BaseModel):
    """Two loss terms; ``loss_b`` is NaN for the sample whose value is ``nan_at``."""

    def __init__(self, nan_at):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.nan_at = nan_at

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs).float() if isinstance(inputs, list) else inputs.float()
        loss_b = (self.w * x).mean() * 0.1
        if bool((x == self.nan_at).any()):
            loss_b = loss_b * float('nan')
        return dict(loss_a=(self.w - 2).pow(2).sum(), loss_b=loss_b)


def _toy_runner(work_dir, nan_at, **cfg):
    from mmengine.runner import Runner
    return Runner(
        model=_ToyLossModel(nan_at),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=[dict(inputs=torch.tensor(float(i + 1))) for i in range(10)],
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=1,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=[dict(type='NaNGuardHook')],
        default_scope='mmpretrain',
        experiment_name=f'toy_{osp.basename(work_dir)}_{np.random.randint(1 << 30)}',  # runners of one second
        **cfg)


@pytest.mark.parametrize('nan_at', [5, 6])  # between checkpoints, and at a checkpoint's iteration
def test_nan_guard_stops_at_the_right_iteration_and_keeps_the_last_good_checkpoint(tmp_path, nan_at):
    runner = _toy_runner(str(tmp_path), nan_at)
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert f'at iteration {nan_at} (epoch 1, batch {nan_at}, loss_b=nan)' in message
    last_good = (nan_at - 1) // 2 * 2
    assert f'the last checkpoint is {osp.join(str(tmp_path), f"iter_{last_good}.pth")}' in message
    saved = sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth'))
    assert saved == [f'iter_{i}.pth' for i in range(2, last_good + 1, 2)]
    state = torch.load(osp.join(tmp_path, f'iter_{last_good}.pth'), weights_only=False)['state_dict']
    assert torch.isfinite(state['w']).all()
    assert runner.iter == nan_at - 1  # the loop stopped inside that iteration
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert message in log  # the log file says why the run ended


def test_nan_guard_through_the_command_line_is_one_line_and_status_2(tmp_path, capsys):
    from orl_plugin.utils.error_policy import EXIT_KNOWN_ERROR, run_cli

    def main(argv):
        _toy_runner(str(tmp_path), nan_at=3).train()

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [])
    assert exit_info.value.code == EXIT_KNOWN_ERROR
    (line, ) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith('error:')]
    assert 'at iteration 3 (epoch 1, batch 3, loss_b=nan)' in line


def test_nonfinite_terms_name_the_term_not_the_sum():
    nan, inf = torch.tensor(float('nan')), torch.tensor(float('inf'))
    assert nonfinite_terms(dict(loss=nan, loss_global=torch.tensor(1.), loss_intra=nan)) == ['loss_intra=nan']
    assert nonfinite_terms(dict(loss=inf)) == ['loss=inf']  # BYOL and MoCo log one term
    assert nonfinite_terms(dict(loss=torch.tensor(1.), acc=nan)) == []  # not a loss
    assert nonfinite_terms(None) == []


def _nan_guard_worker(rank, init_file, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        logger = MMLogger.get_instance(f'nan_guard_{rank}')
        runner = SimpleNamespace(
            logger=logger, iter=0, epoch=0, train_loop=None, message_hub=SimpleNamespace(get_info=lambda key: None))
        hook = NaNGuardHook()
        stopped = None
        for it in range(6):
            runner.iter = it
            bad = rank == 1 and it == 3  # only rank 1 sees a NaN, at iteration 4
            try:
                hook.after_train_iter(runner, it, None, dict(loss=torch.tensor(float('nan') if bad else 1.0)))
            except NonFiniteLossError as e:
                stopped = (it + 1, str(e))
                break
        with open(f'{out}.{rank}', 'w') as f:
            json.dump(stopped, f)
    finally:
        dist.destroy_process_group()


def test_nan_guard_stops_every_rank_at_the_same_iteration():
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'stopped')
        mp.spawn(_nan_guard_worker, args=(osp.join(tmp, 'init'), out), nprocs=2)
        stopped = [json.load(open(f'{out}.{r}')) for r in range(2)]
    assert [s[0] for s in stopped] == [4, 4]
    assert all('at iteration 4 (rank 1: loss=nan)' in s[1] for s in stopped)


# ----------------------------------------------------------------------------- the TensorBoard switch
def test_tensorboard_switch(tmp_path):
    from mmengine.config import Config

    from orl_plugin.engine.hooks.tensorboard_switch_hook import TensorboardMissingError
    cfg = Config(dict(tensorboard=True))
    runner = _toy_runner(str(tmp_path), nan_at=-1, cfg=cfg)
    runner._hooks.clear()  # only the switch, not the runner's defaults
    runner.register_hook(dict(type='TensorboardSwitchHook'))
    if importlib.util.find_spec('tensorboard') is None:
        with pytest.raises(TensorboardMissingError, match='pip install tensorboard'):
            runner.call_hook('before_run')
        return
    runner.call_hook('before_run')
    runner.visualizer.add_scalars({'loss': 1.5}, step=1)
    vis_data = osp.join(runner.log_dir, 'vis_data')
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(vis_data))
    assert osp.exists(osp.join(vis_data, 'scalars.json'))  # the local backend still writes


def test_tensorboard_switch_off_adds_nothing(tmp_path):
    runner = _toy_runner(str(tmp_path), nan_at=-1)
    runner.register_hook(dict(type='TensorboardSwitchHook'))
    runner.call_hook('before_run')
    assert runner.visualizer.get_backend('TensorboardVisBackend') is None
