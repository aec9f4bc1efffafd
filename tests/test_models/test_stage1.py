"""Stage 1 (image-level BYOL): the CPU config trains; the COCO configs are the paper's method."""
import json
import math
import os.path as osp

import pytest
import torch
from helpers import ROOT
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.registry import MODELS

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes

CPU_CFG = osp.join(ROOT, 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py')
COCO_CFG = osp.join(ROOT, 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py')
COCO_PLUS_CFG = osp.join(ROOT, 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco-plus.py')


def test_cpu_config_trains_and_saves_backbone(tmp_path):
    data_root = str(tmp_path / 'scenes')
    make_synthetic_scenes(data_root, 10, seed=0, img_size=(64, 64), workers=1)  # 8 train, 2 val
    cfg = Config.fromfile(CPU_CFG)
    cfg.work_dir = str(tmp_path / 'work')
    dl = cfg.train_dataloader
    dl.batch_size = 4
    dl.num_workers = 0
    dl.persistent_workers = False
    dl.dataset.data_root = data_root
    for view in dl.dataset.pipeline[1]['transforms']:
        view[0]['scale'] = 32  # RandomResizedCrop
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2)
    # Start at full lr: the default 1-epoch warm-up would barely move the weights here.
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=2, by_epoch=True, convert_to_iter_based=True)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'WARNING'
    probe, views, *monitors = cfg.custom_hooks
    assert probe.type == 'ObjectProbeHook' and views.type == 'ViewRetrievalHook'
    assert [m.type for m in monitors] == ['CollapseMonitorHook', 'NaNGuardHook', 'TensorboardSwitchHook']
    probe.reference.data_root = probe.query.data_root = views.dataset.data_root = data_root
    probe.interval = views.interval = 1
    runner = Runner.from_cfg(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()

    scalars = runner.message_hub.log_scalars
    losses = scalars['train/loss'].data[0]
    assert len(losses) == 4 and all(math.isfinite(float(x)) for x in losses)
    # The paper's loss: (2 - 2 cos) over both view orders, so each iteration's total is in [0, 8].
    assert all(0.0 <= float(x) <= 8.0 for x in losses)

    # The object probe ran before training and after each epoch, and logged where users look.
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        probes = [r for r in map(json.loads, f) if 'probe/object_knn_top1' in r]
    assert len(probes) == 3
    assert all(0.0 <= r['probe/object_knn_top1'] <= 1.0 for r in probes)
    assert {r['probe/object_knn_top1_init'] for r in probes} == {probes[0]['probe/object_knn_top1']}
    # So did held-out view retrieval, on the training views (32 px here) of the 2 val images.
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        views = [r for r in map(json.loads, f) if 'probe/view_top1' in r]
    assert len(views) == 3 and all(r['probe/view_chance'] == 0.5 for r in views)
    assert all(r['probe/view_top1'] in (0.0, 0.25, 0.5, 0.75, 1.0) for r in views)
    # With the features' effective rank: 4 views spread over at most 3 directions around their mean.
    assert all(1.0 <= r['probe/view_rank'] <= 3.0 + 1e-6 for r in views)
    assert {r['probe/view_rank_init'] for r in views} == {views[0]['probe/view_rank']}
    # The collapse monitor: its fixed batch is the first epoch's 8 images (fewer than it asks for),
    # checked at the end of that epoch (iteration 2); its next check would be at iteration 10.
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        ranks = [r for r in map(json.loads, f) if 'monitor/projector_rank' in r]
    assert [r['step'] for r in ranks] == [2] and 1.0 <= ranks[0]['monitor/projector_rank'] <= 7.0 + 1e-6

    ckpt_path = osp.join(cfg.work_dir, 'epoch_2.pth')
    ckpt = CheckpointLoader.load_checkpoint(ckpt_path, map_location='cpu')
    state = ckpt['state_dict']
    backbone = {k for k in state if k.startswith('backbone.')}
    assert 'backbone.conv1.weight' in backbone and 'backbone.layer4.1.conv2.weight' in backbone
    assert any(k.startswith('neck.') for k in state) and any(k.startswith('target_net.') for k in state)
    # The online backbone trained; the EMA target moved towards it but is not a copy of it.
    w = 'backbone.layer4.1.conv2.weight'
    assert not torch.equal(state[w], before[w])
    assert not torch.equal(state[w], state['target_net.module.0.layer4.1.conv2.weight'])


def _cos_ema_momentum(ema, steps, max_iters):
    """Effective target momentum (tau) of mmpretrain's CosineEMA at update ``steps``."""
    MessageHub.get_current_instance().update_info('max_iters', max_iters)
    avg, src = torch.zeros(1), torch.ones(1)
    ema.avg_func(avg, src, steps)
    return 1.0 - float(avg)  # avg = (1 - m) * 0 + m * 1 = m, and tau = 1 - m


@pytest.mark.parametrize('cfg_path', [COCO_CFG, COCO_PLUS_CFG])
def test_coco_config_is_the_paper_method(cfg_path):
    cfg = Config.fromfile(cfg_path)
    model_cfg = cfg.model
    assert model_cfg.type == 'BYOL'
    assert model_cfg.backbone.depth == 50 and tuple(model_cfg.backbone.out_indices) == (3, )
    assert model_cfg.backbone.norm_cfg.type == 'SyncBN'
    # Build the necks / head only (the full BYOL with a ResNet-50 is slow to build on CPU).
    neck = MODELS.build(model_cfg.neck)
    assert (neck.fc0.in_features, neck.fc0.out_features) == (2048, 4096)
    assert neck.fc0.bias is not None  # Linear with bias
    assert isinstance(neck.bn0, torch.nn.SyncBatchNorm)
    assert (neck.fc1.in_features, neck.fc1.out_features) == (4096, 256)
    assert neck.fc1.bias is None  # last Linear without bias
    assert neck.bn_names == [None]  # no last BN
    head = MODELS.build(model_cfg.head)
    pred = head.predictor
    assert (pred.fc0.in_features, pred.fc0.out_features, pred.fc1.out_features) == (256, 4096, 256)
    assert pred.bn_names == [None] and pred.fc1.bias is None and pred.fc0.bias is not None

    # BYOL.loss returns 2 * (l(online_v1, target_v2) + l(online_v2, target_v1)); with this head
    # each term 2 * l must be the paper's 2 - 2 cos(prediction, target).
    head.predictor.eval()  # fixed BN statistics, so the predictor is a deterministic function
    x, t = torch.randn(6, 256), torch.randn(6, 256)
    with torch.no_grad():
        p = head.predictor([x])[0]
        expected = (2 - 2 * torch.nn.functional.cosine_similarity(p, t, dim=-1)).mean()
        assert torch.allclose(2 * head.loss(x, t), expected, atol=1e-5)

    # Target momentum 0.99 -> 1.0 on a cosine over all iterations (mmpretrain convention m = 1 - tau).
    assert model_cfg.base_momentum == pytest.approx(0.01)
    ema = MODELS.build(dict(type='CosineEMA', model=torch.nn.Linear(2, 2), momentum=model_cfg.base_momentum))
    assert _cos_ema_momentum(ema, 0, 1000) == pytest.approx(0.99)
    assert _cos_ema_momentum(ema, 500, 1000) == pytest.approx(0.995)
    assert _cos_ema_momentum(ema, 1000, 1000) == pytest.approx(1.0)

    # Optimiser and schedule of the paper: SGD 0.4 / 0.9 / 1e-4 at 512, AMP, 800 epochs, 4 warm-up.
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=1e-4)
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 512
    assert cfg.train_cfg.max_epochs == 800
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 4 and cosine.begin == 4 and cosine.end == 800
    assert cosine.eta_min == 0
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')

    # The views of the paper: blur 1.0 / 0.1, solarize 0 / 0.2.
    views = cfg.train_dataloader.dataset.pipeline[1].pipelines  # ImageViews
    blur = [[t for t in v if t.type == 'GaussianBlur'][0].prob for v in views]
    solarize = [[t for t in v if t.type == 'Solarize'][0] for v in views]
    assert blur == [1.0, 0.1] and [s.prob for s in solarize] == [0.0, 0.2] and solarize[0].thr == 128
    assert all(v[0].scale == 224 and tuple(v[0].crop_ratio_range) == (0.08, 1.0) for v in views)
