"""Checkpoints the plugin's runs write load in a process that never imported orl_plugin:
plain ``torch.load(weights_only=True)`` with no allow-list, and mmdet's own Mask R-CNN config."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import BYOL_SYNTHETIC_CONFIG, ROOT, set_view_sizes, tiny_byol_overrides
from mmengine.config import Config
from mmengine.runner import Runner

STAGE3_CONFIG = osp.join(ROOT, 'configs', 'orl', 'stage3', 'orl_resnet18_1xb16-coslr-30e_synthetic.py')
CONTRASTIVE_CONFIG = osp.join(ROOT, 'configs', 'orl', 'stage3', 'orl-mocov2_resnet18_1xb32-coslr-30e_synthetic.py')
DET_CONFIG = osp.join(ROOT, 'configs', 'benchmarks', 'mmdetection', 'synthetic',
                      'faster-rcnn_r18_fpn_1xb8-100i_synthetic.py')

# Runs in a fresh interpreter with nothing of the plugin imported. argv: JSON list of checkpoints,
# then (optional) a stage-3 checkpoint for mmdet's Mask R-CNN and a folder for its config.
VANILLA = r'''
import json, os.path as osp, sys
import torch

paths = json.loads(sys.argv[1])
unsafe = {p: [str(g) for g in torch.serialization.get_unsafe_globals_in_checkpoint(p)] for p in paths}
loaded = {}
for p in paths:
    try:
        loaded[p] = sorted(torch.load(p, map_location='cpu', weights_only=True))
    except Exception as e:
        loaded[p] = f'{type(e).__name__}: {e}'
report = dict(unsafe=unsafe, keys=loaded)
if len(sys.argv) > 2:
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    ckpt, folder = sys.argv[2], sys.argv[3]
    cfg_path = osp.join(folder, 'mask_rcnn_r18_from_orl.py')
    with open(cfg_path, 'w') as f:
        f.write("_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
                "model = dict(backbone=dict(depth=18, init_cfg=dict(type='Pretrained', "
                f"checkpoint={ckpt!r}, prefix='backbone.')), "
                "neck=dict(in_channels=[64, 128, 256, 512]))\n")
    register_all_modules()
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        model.init_weights()
    saved = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    saved = {k[len('backbone.'):]: v for k, v in saved.items() if k.startswith('backbone.')}
    built = model.backbone.state_dict()
    report['mask_rcnn'] = dict(
        type=cfg.model.type, mask_head=cfg.model.roi_head.mask_head.type,
        missing=sorted(set(saved) - set(built)), unexpected=sorted(set(built) - set(saved)),
        equal=sum(torch.equal(built[k], v) for k, v in saved.items() if k in built),
        num=len(saved))
report['plugin_imported'] = sorted(m for m in sys.modules if m.startswith('orl_plugin'))
print('REPORT ' + json.dumps(report))
'''


def run_vanilla(tmp_path, checkpoints, mask_rcnn_ckpt=None) -> dict:
    """Run :data:`VANILLA` in a subprocess; the plugin's own tree is not on its path."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    args = [sys.executable, '-c', VANILLA, json.dumps(checkpoints)]
    if mask_rcnn_ckpt:
        args += [mask_rcnn_ckpt, str(tmp_path)]
    proc = subprocess.run(args, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(out for out in proc.stdout.splitlines() if out.startswith('REPORT '))
    report = json.loads(line[len('REPORT '):])
    assert report['plugin_imported'] == []
    return report


def official_correspondence(ann_file: str, out: str, k: int = 2) -> str:
    """An official-format correspondence JSON for a COCO split: the ground-truth boxes as kept
    boxes, the next ``k`` images as neighbours, box-to-box pairs."""
    with open(ann_file) as f:
        ann = json.load(f)
    images = ann['images']
    boxes = {im['id']: [] for im in images}
    for a in ann['annotations']:
        boxes[a['image_id']].append([int(round(v)) for v in a['bbox']])
    n = len(images)
    knn = [[(i + d) % n for d in range(1, k + 1)] for i in range(n)]
    box_lists = [boxes[im['id']] for im in images]
    pairs = [[[q + r for q, r in zip(box_lists[i], box_lists[j])][:2] for j in knn[i]] for i in range(n)]
    data = dict(
        info=dict(
            bbox_min_size=0,
            bbox_max_aspect_ratio=3,
            bbox_max_iou=0.5,
            intra_bbox_num=100,
            knn_image_num=k,
            knn_bbox_pair_ratio=0.1),
        images=dict(file_name=[im['file_name'] for im in images], id=[im['id'] for im in images]),
        pseudo_annotations=dict(
            image_id=[im['id'] for im in images], bbox=box_lists, knn_image_id=knn, knn_bbox_pair=pairs))
    with open(out, 'w') as f:
        json.dump(data, f)
    return out


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory, synthetic_scenes):
    """Checkpoints of the CPU configs: stage 1 and stage 3 (1 epoch, 2 iterations each) and a
    Faster R-CNN fine-tune from the stage-3 backbone (2 iterations, no evaluation)."""
    from mmengine.registry import DefaultScope

    import orl_plugin  # noqa: F401
    scope = DefaultScope.get_current_instance()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('portable')
    data_root = synthetic_scenes['out_dir']

    cfg = Config.fromfile(BYOL_SYNTHETIC_CONFIG)
    cfg.merge_from_dict(tiny_byol_overrides(data_root, 1, 3))
    cfg.merge_from_dict(dict(work_dir=str(root / 'stage1'), log_level='WARNING'))
    Runner.from_cfg(cfg).train()

    corr = official_correspondence(synthetic_scenes['train_ann_file'], str(root / 'corr.json'))
    for config, work in ((STAGE3_CONFIG, 'stage3'), (CONTRASTIVE_CONFIG, 'stage3_contrastive')):
        cfg = Config.fromfile(config)
        cfg.merge_from_dict({
            'work_dir': str(root / work), 'log_level': 'WARNING', 'train_dataloader.batch_size': 3,
            'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
            'train_dataloader.dataset.data_root': data_root, 'train_dataloader.dataset.correspondence_file': corr,
            'train_cfg.max_epochs': 1, 'default_hooks.checkpoint.interval': 1
        })
        set_view_sizes(cfg.train_dataloader.dataset.pipeline, 32, 16)
        Runner.from_cfg(cfg).train()
    stage3 = str(root / 'stage3' / 'epoch_1.pth')

    cfg = Config.fromfile(DET_CONFIG)
    det_root = data_root + '/'
    cfg.merge_from_dict({
        'work_dir': str(root / 'det'), 'log_level': 'WARNING', 'model.backbone.init_cfg.checkpoint': stage3,
        'train_dataloader.dataset.data_root': det_root, 'val_dataloader.dataset.data_root': det_root,
        'val_evaluator.ann_file': det_root + 'annotations/instances_val.json', 'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False, 'train_cfg.max_iters': 2,
        'train_cfg.val_begin': 3, 'default_hooks.checkpoint.interval': 2
    })
    Runner.from_cfg(cfg).train()
    torch.set_num_threads(threads)
    if scope is not None:  # the detection run left 'mmdet' current; later tests expect the scope before it
        DefaultScope.get_instance('test_portable_checkpoints_restore', scope_name=scope.scope_name)
    return dict(
        stage1=str(root / 'stage1' / 'epoch_1.pth'),
        stage3=stage3,
        stage3_contrastive=str(root / 'stage3_contrastive' / 'epoch_1.pth'),
        det=str(root / 'det' / 'iter_2.pth'))


def test_checkpoints_load_in_a_vanilla_process(tmp_path, checkpoints):
    """Plain ``torch.load(weights_only=True)`` of all three, and mmdet's own Mask R-CNN config
    (R-18, FPN in_channels to match) initialising its backbone from the stage-3 checkpoint."""
    paths = [checkpoints[k] for k in ('stage1', 'stage3', 'stage3_contrastive', 'det')]
    # the control: the format of orl_plugin 0.1.0 (numpy arrays in the message hub) does not load
    old = str(tmp_path / 'numpy_format.pth')
    ckpt = torch.load(checkpoints['stage1'], weights_only=True)
    for buffer in ckpt['message_hub']['log_scalars'].values():
        buffer['log_history'] = buffer['log_history'].numpy()
    torch.save(ckpt, old)

    report = run_vanilla(tmp_path, paths + [old], mask_rcnn_ckpt=checkpoints['stage3'])
    assert 'numpy._core.multiarray._reconstruct' in report['unsafe'][old]
    assert 'Weights only load failed' in report['keys'][old]
    for path in paths:
        assert report['unsafe'][path] == []  # no global beyond torch's own default allow-list
        assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= \
            set(report['keys'][path])
    mask_rcnn = report['mask_rcnn']
    assert mask_rcnn['type'] == 'MaskRCNN' and mask_rcnn['mask_head'] == 'FCNMaskHead'
    assert mask_rcnn['missing'] == [] and mask_rcnn['unexpected'] == []
    assert mask_rcnn['num'] > 100 and mask_rcnn['equal'] == mask_rcnn['num']
    # the contrastive objective's checkpoint (its queues are plain tensors) initialises mmdet's backbone too
    report = run_vanilla(
        tmp_path, [checkpoints['stage3_contrastive']], mask_rcnn_ckpt=checkpoints['stage3_contrastive'])
    assert report['unsafe'][checkpoints['stage3_contrastive']] == []
    mask_rcnn = report['mask_rcnn']
    assert mask_rcnn['missing'] == [] and mask_rcnn['unexpected'] == []
    assert mask_rcnn['num'] > 100 and mask_rcnn['equal'] == mask_rcnn['num']
