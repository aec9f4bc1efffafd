"""ORL stage-3 model: losses, EMA target, per-view BN, CPU config training."""
import copy
import math
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import ROOT, make_correspondence_store, set_view_sizes
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Pipelines name mmpretrain transforms, as under a runner with
    ``default_scope='mmpretrain'``."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


CPU_CONFIG = osp.join(ROOT, 'configs/orl/stage3/'
                      'orl_resnet18_1xb16-coslr-30e_synthetic.py')
LOSS_KEYS = ('loss_global', 'loss_intra', 'loss_inter')


def _views(batch, img_size=32, patch_size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [img_size] * 2 + [patch_size] * 4
    return [torch.randint(0, 256, (batch, 3, s, s), generator=g, dtype=torch.uint8) for s in sizes]


def _target_and_online(model, name):
    online = dict(model.backbone.named_parameters())[name]
    target = dict(model.target_net.module[0].named_parameters())[name]
    return target, online


def test_orl_losses_ema_and_bn_per_view():
    cfg = Config.fromfile(CPU_CONFIG)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    max_iters = 10
    MessageHub.get_current_instance().update_info('max_iters', max_iters)
    optim = torch.optim.SGD(model.parameters(), lr=0.5)
    data = dict(inputs=_views(4), data_samples=[DataSample() for _ in range(4)])
    name = 'layer1.0.conv1.weight'

    bn = model.backbone.norm1
    tracked = int(bn.num_batches_tracked)
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    # each of the 6 views is its own batch through the online backbone
    assert int(bn.num_batches_tracked) - tracked == 6
    assert set(losses) == set(LOSS_KEYS)
    for key in LOSS_KEYS:
        value = losses[key]
        assert value.ndim == 0 and torch.isfinite(value)
        # 2 - 2 cos per view order, two orders
        assert 0.0 <= value.item() <= 8.0
    # step 0 of the EMA copies the online weights
    target, online = _target_and_online(model, name)
    assert torch.equal(target, online)
    assert not target.requires_grad

    sum(losses.values()).backward()
    for head in (model.head, model.intra_head, model.inter_head):
        grads = [p.grad for p in head.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    optim.step()
    optim.zero_grad()
    target_before = target.detach().clone()
    online_now = online.detach().clone()
    assert not torch.equal(target_before, online_now)

    model(**model.data_preprocessor(data, True), mode='loss')
    # the target moved towards the online network by the cosine momentum
    m = 0.0 - (0.0 - 0.01) * (math.cos(math.pi * 1 / max_iters) + 1) / 2
    target, _ = _target_and_online(model, name)
    assert not torch.equal(target, target_before)
    torch.testing.assert_close(target, (1 - m) * target_before + m * online_now)

    # loss weights scale the branches; 0 switches one off (tests/test_models/test_objectives.py)
    model.intra_loss_weight = 0.5
    halved = model(**model.data_preprocessor(data, True), mode='loss')['loss_intra']
    model.intra_loss_weight = 0.0
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    assert 'loss_intra' not in losses and 0.0 < halved.item() <= 4.0

    with pytest.raises(ValueError, match='6 view batches'):
        model.loss(_views(2)[:4], None)


def test_orl_cpu_config_trains(tmp_path):
    root = str(tmp_path / 'synthetic_scenes')
    make_synthetic_scenes(root, num_images=10, seed=0, img_size=(96, 96), workers=1)
    make_correspondence_store(root)

    cfg = Config.fromfile(CPU_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    set_view_sizes(cfg.train_dataloader.dataset.pipeline, 32, 16)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=1, by_epoch=True, convert_to_iter_based=True)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    target0 = copy.deepcopy(runner.model.target_net.module[0].state_dict()['conv1.weight'])
    runner.train()
    assert runner.iter == 2  # 8 train images, batch 4

    hub = runner.message_hub
    for key in LOSS_KEYS + ('loss', ):
        value = hub.get_scalar(f'train/{key}').current()
        assert np.isfinite(value), key
    total = hub.get_scalar('train/loss').current()
    parts = sum(hub.get_scalar(f'train/{k}').current() for k in LOSS_KEYS)
    assert total == pytest.approx(parts, rel=1e-5)
    assert not torch.equal(runner.model.target_net.module[0].state_dict()['conv1.weight'], target0)

    ckpt = osp.join(cfg.work_dir, 'epoch_1.pth')
    # what mmdet's init_cfg=dict(type='Pretrained', prefix='backbone.') reads
    backbone_sd = _load_checkpoint_with_prefix('backbone.', ckpt)
    fresh = MODELS.build(cfg.model.backbone)
    missing, unexpected = fresh.load_state_dict(backbone_sd, strict=True)
    assert not missing and not unexpected
    torch.testing.assert_close(backbone_sd['conv1.weight'], runner.model.backbone.conv1.weight.detach())
