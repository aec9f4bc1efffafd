"""Transfer to mmdet: the benchmark configs load a stage-3 checkpoint's backbone as is.

A checkpoint shaped like our stage-3 output (online ``backbone.*`` ResNet weights, an EMA target
whose backbone has the same key names under ``target_net.module.0.``, projector, predictors,
runner state) is made here with random values; building mmdet's own detectors through our configs
and calling ``init_weights()`` must put exactly the ``backbone.*`` tensors into the detector.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from helpers import ROOT
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

# Stage-3 checkpoints are written by runs that import the plugin (its stack fixes make the
# message hub plain data); the detection configs import it too, through custom_imports.
import orl_plugin  # noqa: F401,E402

BENCH = osp.join(ROOT, 'configs', 'benchmarks', 'mmdetection')
COCO_CFG = osp.join(BENCH, 'coco', 'mask-rcnn_r50-syncbn-4conv1fc_fpn_1x_coco_orl.py')
VOC_CFG = osp.join(BENCH, 'voc0712', 'faster-rcnn_r50-c4_ms-24k_voc0712_orl.py')
SYN_CFG = osp.join(BENCH, 'synthetic', 'faster-rcnn_r18_fpn_1xb8-100i_synthetic.py')


def _load_det_train():
    spec = importlib.util.spec_from_file_location('orl_det_train', osp.join(ROOT, 'tools', 'det_train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _perturbed(sd, seed):
    """``sd`` plus small noise: values no other source has, with a network that still behaves
    (running variances stay positive)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = torch.randint(1, 100, v.shape, generator=g, dtype=v.dtype)
        elif k.endswith('running_var'):
            out[k] = v + 0.05 * torch.rand(v.shape, generator=g)
        else:
            out[k] = v + 0.01 * torch.randn(v.shape, generator=g)
    return out


def make_stage3_checkpoint(path, depth):
    """Write an ORL/BYOL-shaped training checkpoint; return its ``backbone.*`` tensors (bare keys)."""
    from mmpretrain.models import ResNet
    net = ResNet(depth=depth)
    net.init_weights()
    online, target = _perturbed(net.state_dict(), 1), _perturbed(net.state_dict(), 2)
    sd = OrderedDict(('backbone.' + k, v) for k, v in online.items())
    sd.update(('target_net.module.0.' + k, v) for k, v in target.items())
    sd['target_net.steps'] = torch.tensor(10)
    for prefix in ('neck.', 'target_net.module.1.', 'head.predictor.', 'intra_head.predictor.'):
        sd[prefix + 'fc0.weight'] = torch.rand(8, 4)
    hub = MessageHub.get_instance('test_transfer')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 10)
    torch.save(
        dict(
            meta=dict(epoch=1, iter=10),
            state_dict=sd,
            message_hub=hub.state_dict(),
            optimizer=dict(state={}, param_groups=[dict(lr=0.1, params=[0])])), path)
    return online, target


def build_detector(cfg):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def assert_loaded(module, expected, prefix='', other=None):
    """Every tensor of ``module`` (params and buffers) equals ``expected[prefix + key]``."""
    sd = module.state_dict()
    assert sd, 'empty module'
    for k, v in sd.items():
        ref = expected[prefix + k]
        assert v.shape == ref.shape and torch.equal(v, ref), f'{prefix}{k} not loaded'
        if other is not None and v.numel() > 1:
            assert not torch.equal(v, other[prefix + k]), f'{prefix}{k} came from the target net'
    return len(sd)


@pytest.fixture(scope='module')
def r50_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'epoch_800.pth')
    online, target = make_stage3_checkpoint(path, 50)
    return path, online, target


def _is_syncbn(m):
    return isinstance(m, torch.nn.SyncBatchNorm)


def test_coco_mask_rcnn_loads_backbone(r50_ckpt):
    path, online, target = r50_ckpt
    cfg = Config.fromfile(COCO_CFG)
    m = cfg.model
    # the self-supervised benchmark setting, on top of mmdet's own Mask R-CNN R50-FPN 1x
    assert m.type == 'MaskRCNN' and m.backbone.depth == 50
    assert m.backbone.frozen_stages == -1 and m.backbone.norm_eval is False
    assert m.backbone.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained, prefix='backbone.')
    assert m.roi_head.bbox_head.type == 'Shared4Conv1FCBBoxHead'
    for part in (m.backbone, m.neck, m.roi_head.bbox_head, m.roi_head.mask_head):
        assert part.norm_cfg.type == 'SyncBN'
    assert cfg.train_cfg.max_epochs == 12 and cfg.default_scope == 'mmdet'

    cfg.model.backbone.init_cfg.checkpoint = path
    det = build_detector(cfg)
    for part in (det.backbone, det.neck, det.roi_head.bbox_head, det.roi_head.mask_head):
        assert any(_is_syncbn(x) for x in part.modules()), type(part).__name__
    det.init_weights()
    assert assert_loaded(det.backbone, online, other=target) == len(online)


def test_voc_c4_loads_backbone_and_res5_head(r50_ckpt):
    path, online, target = r50_ckpt
    det_train = _load_det_train()
    cfg = Config.fromfile(VOC_CFG)
    m = cfg.model
    assert m.backbone.num_stages == 3 and m.backbone.style == 'pytorch'
    assert m.roi_head.shared_head.style == 'pytorch' and m.roi_head.bbox_head.num_classes == 20
    assert m.data_preprocessor.bgr_to_rgb is True and m.data_preprocessor.std[0] == 58.395
    assert cfg.train_cfg.max_iters == 24000
    # one --pretrained sets both init_cfgs: the backbone (res2-res4) and the shared head (res5)
    changed = det_train.set_pretrained(cfg, path)
    assert changed == ['model.backbone.init_cfg', 'model.roi_head.shared_head.init_cfg']

    det = build_detector(cfg)
    det.init_weights()
    assert assert_loaded(det.backbone, online, other=target) == sum(not k.startswith('layer4.') for k in online)
    head = det.roi_head.shared_head
    n = assert_loaded(head.layer4, online, prefix='layer4.', other=target)
    assert n == sum(k.startswith('layer4.') for k in online)
    # the extra norm after res5 (detectron2's Res5ROIHeadsExtraNorm) starts as identity
    assert _is_syncbn(head.norm) and head.norm.num_features == 2048
    assert torch.all(head.norm.weight == 1) and torch.all(head.norm.bias == 0)
    assert _is_syncbn(det.backbone.bn1) and _is_syncbn(head.layer4[0].bn1)

    none_cfg = Config.fromfile(VOC_CFG)
    det_train.set_pretrained(none_cfg, 'none')
    assert none_cfg.model.backbone.init_cfg is None
    assert none_cfg.model.roi_head.shared_head.init_cfg is None
    with pytest.raises(FileNotFoundError, match='--pretrained checkpoint not found'):
        det_train.set_pretrained(Config.fromfile(VOC_CFG), '/nonexistent/ckpt.pth')


def test_resnet18_keys_match_between_stacks():
    """The CPU models' backbone (mmpretrain ResNet-18 inside our ORL) and mmdet's ResNet-18 have the
    same keys and shapes, so `backbone.*` loads with no renaming."""
    from mmdet.models.backbones import ResNet as DetResNet
    from mmpretrain.registry import MODELS
    orl_cfg = Config.fromfile(osp.join(ROOT, 'configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        orl = MODELS.build(orl_cfg.model)
    ours = {k: v.shape for k, v in orl.backbone.state_dict().items()}
    det = {k: v.shape for k, v in DetResNet(depth=18).state_dict().items()}
    assert ours == det


@pytest.fixture(scope='module')
def tiny_scenes(tmp_path_factory):
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
    out = str(tmp_path_factory.mktemp('scenes'))
    make_synthetic_scenes(out, num_images=10, seed=3, val_fraction=0.2)
    return out


def test_synthetic_config_matches_data(tiny_scenes):
    from orl_plugin.datasets.synthetic_scenes import CATEGORIES
    cfg = Config.fromfile(SYN_CFG)
    assert list(cfg.classes) == [c['name'] for c in CATEGORIES]
    with open(osp.join(tiny_scenes, 'annotations', 'instances_val.json')) as f:
        assert [c['name'] for c in json.load(f)['categories']] == list(cfg.classes)
    assert cfg.model.roi_head.bbox_head.num_classes == len(CATEGORIES)
    assert cfg.model.backbone.norm_cfg.type == 'BN' and cfg.model.backbone.norm_eval is False


def test_synthetic_detection_trains_from_stage3_checkpoint(tiny_scenes, tmp_path):
    """The launcher on the CPU: the R18 backbone comes from a stage-3-like checkpoint, two training
    iterations run, and the COCO bbox evaluation on the val split reports mAP."""
    ckpt = str(tmp_path / 'epoch_30.pth')
    online, target = make_stage3_checkpoint(ckpt, 18)

    cfg = Config.fromfile(SYN_CFG)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    det = build_detector(cfg)
    det.init_weights()
    assert assert_loaded(det.backbone, online, other=target) == len(online)

    root = tiny_scenes + '/'
    work_dir = str(tmp_path / 'work')
    opts = [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1',
        # after 2 iterations no score passes 0.05; keep every box so that COCO eval runs
        'model.test_cfg.rcnn.score_thr=0.0'
    ]
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'benchmarks', 'mmdetection', 'train.sh'), SYN_CFG, ckpt, '0', '--work-dir', work_dir,
        '--cfg-options', *opts
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert f'pretrained={ckpt} -> model.backbone.init_cfg' in log
    assert 'Iter(train) [2/2]' in log
    assert 'coco/bbox_mAP:' in log, log[-2000:]
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))


def test_launcher_usage():
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'benchmarks', 'mmdetection', 'train.sh')],
                          capture_output=True,
                          text=True)
    assert proc.returncode == 2 and 'usage: tools/benchmarks/mmdetection/train.sh' in proc.stdout
