"""The paper's transfer protocol: the detectron2 settings of the official ORL / MoCo detection
benchmarks, field by field in this project's mmdet configs.

Each row of ``COCO`` and ``VOC`` is one setting: the official detectron2 value (with the config key
that sets it), this project's value in words, and the resolved config keys that must hold it. The
table of docs/en/user_guides/finetuning.md is this data (``python tests/test_transfer/test_transfer_protocol.py``
prints it). Official sources: Jiahao000/ORL benchmarks/detection/configs/R_50_FPN_1x_infomin.yaml (on R_50_FPN_1x.yaml,
Base-RCNN-FPN.yaml) and facebookresearch/moco detection/configs/pascal_voc_R_50_C4_24k_moco.yaml
(on pascal_voc_R_50_C4_24k.yaml, Base-RCNN-C4-BN.yaml), on detectron2's config/defaults.py.
"""
import os.path as osp
from typing import Any, Dict, List, NamedTuple
from xml.etree import ElementTree as ET

import pytest
import torch
from helpers import ROOT
from mmengine.config import Config
from mmengine.registry import DefaultScope

BENCH = osp.join(ROOT, 'configs', 'benchmarks', 'mmdetection')
COCO_CFG = osp.join(BENCH, 'coco', 'mask-rcnn_r50-syncbn-4conv1fc_fpn_ms-90k_coco_orl.py')
VOC_CFG = osp.join(BENCH, 'voc0712', 'faster-rcnn_r50-c4_ms-24k_voc0712_orl.py')

RGB = dict(bgr_to_rgb=True, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
SGD = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4)


class Row(NamedTuple):
    setting: str
    official: str  # detectron2's value and key
    ours: str  # this project's value, in words
    checks: Dict[str, Any]  # resolved config key -> value


def _scales(shorts) -> list:
    return [(1333, s) for s in shorts]


def _warmup(iters: int) -> dict:
    return dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=iters)


def _steps(max_iters: int, milestones: list) -> dict:
    return dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=milestones, gamma=0.1)


def _common(max_iters: int, steps: list, warmup: int) -> List[Row]:
    """The rows both protocols share, at their schedule."""
    k = lambda n: f'{n // 1000}k'  # noqa: E731
    return [
        Row('Batch, learning rate', '16 images, 0.02 (`SOLVER.IMS_PER_BATCH`, `BASE_LR`)', '8 GPUs x 2 images, lr 0.02',
            {'train_dataloader.batch_size': 2, 'auto_scale_lr.base_batch_size': 16, 'optim_wrapper.optimizer.lr': 0.02
             }),
        Row('Optimiser', 'SGD, momentum 0.9, weight decay 1e-4, fp32, no gradient clipping '
            '(`SOLVER.MOMENTUM`, `WEIGHT_DECAY`)', 'the same',
            {'optim_wrapper.optimizer': SGD, 'optim_wrapper.type': 'OptimWrapper'}),
        Row('Weight decay of norm layers', '0 (`SOLVER.WEIGHT_DECAY_NORM`)', '0 (`paramwise_cfg.norm_decay_mult=0`)',
            {'optim_wrapper.paramwise_cfg.norm_decay_mult': 0.0}),
        Row(
            'Schedule', f'{k(max_iters)} iterations, lr x0.1 at {k(steps[0])} and {k(steps[1])} '
            '(`SOLVER.MAX_ITER`, `STEPS`)', f'`IterBasedTrainLoop` {max_iters}, `MultiStepLR` {steps}', {
                'train_cfg.type': 'IterBasedTrainLoop', 'train_cfg.max_iters': max_iters, 'param_scheduler.1': _steps(
                    max_iters, steps), 'train_dataloader.sampler.type': 'InfiniteSampler'
            }),
        Row('Warm-up', f'linear from lr x 0.001 over {warmup:,} iterations (`SOLVER.WARMUP_ITERS`, '
            '`WARMUP_FACTOR`)', f'`LinearLR(start_factor=0.001)` over {warmup} iterations',
            {'param_scheduler.0': _warmup(warmup)}),
        Row('PreciseBN', 'before the evaluation, 200 iterations (`TEST.PRECISE_BN`)',
            '`DetPreciseBNHook(num_iters=200)` (orl_plugin/transfer), training forward',
            {'custom_hooks': [dict(type='DetPreciseBNHook', num_iters=200)]}),
        Row('Evaluation', 'once, after training (`TEST.EVAL_PERIOD` 0)', f'`val_interval={max_iters}`',
            {'train_cfg.val_interval': max_iters}),
        Row(
            'Anchor matching', 'IoU >= 0.7 positive, < 0.3 negative; each box\'s best anchors positive '
            'at any IoU; 256 per image, half positive', 'the same (`min_pos_iou=0`)', {
                'model.train_cfg.rpn.assigner.pos_iou_thr': 0.7, 'model.train_cfg.rpn.assigner.neg_iou_thr': 0.3,
                'model.train_cfg.rpn.assigner.min_pos_iou': 0.0, 'model.train_cfg.rpn.assigner.match_low_quality': True,
                'model.train_cfg.rpn.sampler.num': 256, 'model.train_cfg.rpn.sampler.pos_fraction': 0.5
            }),
        Row(
            'RoI sampling', '512 per image, 25% positive (IoU >= 0.5), ground truth added, no '
            'low-quality matches', 'the same', {
                'model.train_cfg.rcnn.sampler.num': 512, 'model.train_cfg.rcnn.sampler.pos_fraction': 0.25,
                'model.train_cfg.rcnn.sampler.add_gt_as_proposals': True,
                'model.train_cfg.rcnn.assigner.pos_iou_thr': 0.5,
                'model.train_cfg.rcnn.assigner.match_low_quality': False
            }),
        Row(
            'Detections', 'score > 0.05, NMS 0.5, 100 per image', 'the same', {
                'model.test_cfg.rcnn.score_thr': 0.05, 'model.test_cfg.rcnn.nms.iou_threshold': 0.5,
                'model.test_cfg.rcnn.max_per_img': 100
            }),
    ]


def _backbone(official_norm: str, norm_paths: List[str], resnets: List[str]) -> List[Row]:
    """Rows of the network's norm layers (``norm_paths``; the ResNet parts among them:
    ``resnets``), stages and input."""
    return [
        Row('Norm layers', official_norm, 'SyncBN, `norm_eval=False`',
            {**{f'{p}.norm_cfg.type': 'SyncBN' for p in norm_paths}, **{f'{p}.norm_eval': False for p in resnets}}),
        Row('Frozen stages', 'none (`BACKBONE.FREEZE_AT` 0)', '`frozen_stages=-1`',
            {'model.backbone.frozen_stages': -1}),
        Row('ResNet', 'torchvision style (`RESNETS.STRIDE_IN_1X1` False)', "`style='pytorch'`",
            {'model.backbone.style': 'pytorch'}),
        Row('Input', 'RGB, ImageNet mean and std in pixels (`INPUT.FORMAT`, `PIXEL_MEAN`, `PIXEL_STD`)', 'the same',
            {f'model.data_preprocessor.{k}': v for k, v in RGB.items()}),
    ]


COCO: List[Row] = [
    Row('Detector', 'Mask R-CNN, ResNet-50 FPN', 'the same',
        {'model.type': 'MaskRCNN', 'model.backbone.depth': 50, 'model.neck.type': 'FPN'}),
    *_backbone(
        'SyncBN in the backbone, FPN and heads, statistics trained (`RESNETS.NORM`, '
        '`FPN.NORM`, `ROI_BOX_HEAD.NORM`, `ROI_MASK_HEAD.NORM`)',
        ['model.backbone', 'model.neck', 'model.roi_head.bbox_head', 'model.roi_head.mask_head'], ['model.backbone']),
    Row(
        'Box head', '4conv1fc: 4 convs of 256, 1 fc of 1024, SyncBN (`ROI_BOX_HEAD.NUM_CONV` 4, '
        '`NUM_FC` 1, `NORM`)', '`Shared4Conv1FCBBoxHead`', {
            'model.roi_head.bbox_head.type': 'Shared4Conv1FCBBoxHead',
            'model.roi_head.bbox_head.conv_out_channels': 256, 'model.roi_head.bbox_head.fc_out_channels': 1024
        }),
    Row('Mask head', '4 convs, SyncBN (`ROI_MASK_HEAD.NUM_CONV` 4, `NORM`)', '`FCNMaskHead`, 4 convs',
        {'model.roi_head.mask_head.num_convs': 4}),
    Row(
        'Training scales', 'short side one of 640, 672, ..., 800, long side <= 1333, horizontal flip '
        '(`INPUT.MIN_SIZE_TRAIN`, `MAX_SIZE_TRAIN`)', '`RandomChoiceResize`, `RandomFlip(0.5)`', {
            'train_pipeline.2.scales': _scales(range(640, 801, 32)), 'train_pipeline.2.keep_ratio': True,
            'train_pipeline.3.prob': 0.5
        }),
    Row('Test scale', 'short side 800, long side <= 1333', '`Resize((1333, 800))`',
        {'test_pipeline.1.scale': (1333, 800)}),
    *_common(90000, [60000, 80000], 1000),
    Row(
        'RPN proposals', '2000 per level before NMS, 1000 after (training); 1000 / 1000 (test)', 'the same', {
            'model.train_cfg.rpn_proposal.nms_pre': 2000, 'model.train_cfg.rpn_proposal.max_per_img': 1000,
            'model.test_cfg.rpn.nms_pre': 1000, 'model.test_cfg.rpn.max_per_img': 1000
        }),
    Row('Metric', 'COCO box and mask AP on val2017', '`CocoMetric` bbox, segm',
        {'val_evaluator.metric': ['bbox', 'segm']}),
]

VOC_TRAIN = ['VOC2007/ImageSets/Main/trainval.txt', 'VOC2012/ImageSets/Main/trainval.txt']
VOC: List[Row] = [
    Row('Detector', 'Faster R-CNN, ResNet-50 C4: res5 as the RoI head', 'the same (`ResLayer` head)',
        {'model.type': 'FasterRCNN', 'model.backbone.num_stages': 3, 'model.roi_head.shared_head.stage': 3}),
    Row('Extra norm after res5', 'yes (`Res5ROIHeadsExtraNorm`)', "mmpretrain's `ResLayerExtraNorm`",
        {'model.roi_head.shared_head.type': 'ResLayerExtraNorm'}),
    *_backbone(
        'SyncBN in the backbone and res5 head, statistics trained (`RESNETS.NORM` of '
        "ORL's Base-RCNN-C4-BN.yaml; MoCo's has naiveSyncBN)", ['model.backbone', 'model.roi_head.shared_head'],
        ['model.backbone', 'model.roi_head.shared_head']),
    Row(
        'RoI features', '14x14 RoIAlign (aligned), res5, average pool', 'the same', {
            'model.roi_head.bbox_roi_extractor.roi_layer.output_size': 14,
            'model.roi_head.bbox_roi_extractor.roi_layer.sampling_ratio': 0,
            'model.roi_head.bbox_head.with_avg_pool': True
        }),
    Row(
        'Training data', "VOC2007 + VOC2012 trainval, 'difficult' objects included (detectron2's "
        'Pascal VOC loader)', '`KeepDifficultVOCDataset` (orl_plugin/transfer)', {
            'train_dataloader.dataset.datasets.0.type': 'KeepDifficultVOCDataset',
            'train_dataloader.dataset.datasets.1.type': 'KeepDifficultVOCDataset',
            'train_dataloader.dataset.datasets.0.ann_file': VOC_TRAIN[0],
            'train_dataloader.dataset.datasets.1.ann_file': VOC_TRAIN[1]
        }),
    Row(
        'Training scales', 'short side one of 480, 512, ..., 800, long side <= 1333, horizontal flip',
        '`RandomChoiceResize`, `RandomFlip(0.5)`', {
            'train_pipeline.2.scales': _scales(range(480, 801, 32)), 'train_pipeline.2.keep_ratio': True,
            'train_pipeline.3.prob': 0.5, 'train_dataloader.dataset.datasets.0.pipeline.2.scales': _scales(
                range(480, 801, 32))
        }),
    Row('Test scale', 'short side 800, long side <= 1333', '`Resize((1333, 800))`',
        {'test_pipeline.1.scale': (1333, 800)}),
    *_common(24000, [18000, 22000], 100),
    Row(
        'RPN proposals', '12000 before NMS, 2000 after (training); 6000 / 1000 (test)', 'the same', {
            'model.train_cfg.rpn_proposal.nms_pre': 12000, 'model.train_cfg.rpn_proposal.max_per_img': 2000,
            'model.test_cfg.rpn.nms_pre': 6000, 'model.test_cfg.rpn.max_per_img': 1000
        }),
    Row(
        'Metric', 'VOC2007 test, 11-point AP at IoU 0.50:0.05:0.95; AP (their mean), AP50, AP75',
        '`VOCMetric`: `pascal_voc/mAP` (the mean), `AP50`, `AP75`', {
            'val_evaluator.type': 'VOCMetric', 'val_evaluator.eval_mode': '11points', 'val_evaluator.iou_thrs': [
                0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95
            ], 'test_evaluator.iou_thrs': [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
            'val_dataloader.dataset.ann_file': 'VOC2007/ImageSets/Main/test.txt'
        }),
]


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split('.'):
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    return node


def _plain(value: Any) -> Any:
    """Config values as plain Python (ConfigDicts as dicts, ``_scope_`` tags dropped)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def markdown(rows: List[Row]) -> str:
    lines = ['| setting | detectron2 (official) | this project |', '|---|---|---|']
    lines += [f'| {r.setting} | {r.official} | {r.ours} |' for r in rows]
    return '\n'.join(lines)


@pytest.mark.parametrize('path,rows', [(COCO_CFG, COCO), (VOC_CFG, VOC)], ids=['coco', 'voc'])
def test_config_holds_the_protocol_table(path, rows):
    cfg = Config.fromfile(path)
    for row in rows:
        for key, want in row.checks.items():
            assert _plain(_get(cfg, key)) == want, f'{row.setting}: {key} = {_get(cfg, key)!r}, want {want!r}'
    assert 'clip_grad' not in cfg.optim_wrapper


def _build(cfg):
    from mmdet.registry import MODELS

    import orl_plugin.transfer  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


@pytest.mark.parametrize('path', [COCO_CFG, VOC_CFG], ids=['coco', 'voc'])
def test_built_detector_and_optimizer(path):
    """The model as built: SyncBN wherever the table says, every parameter trained, and the
    optimiser groups: weight decay 0 on every norm-layer parameter, 1e-4 on the rest."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(path)
    for init in (cfg.model.backbone, cfg.model.roi_head.get('shared_head') or {}):
        init.pop('init_cfg', None)  # no checkpoint here
    model = _build(cfg)
    model.init_weights()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    heads = [model.backbone] + ([model.neck, model.roi_head.bbox_head, model.roi_head.mask_head]
                                if cfg.model.type == 'MaskRCNN' else [model.roi_head.shared_head])
    for part in heads:
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in part.modules()), type(part).__name__
    assert all(p.requires_grad for p in model.parameters())
    with DefaultScope.overwrite_default_scope('mmdet'):
        optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    norm_params = {id(p) for m in norms for p in m.parameters(recurse=False)}
    decay = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    assert len(decay) == sum(1 for _ in model.parameters())
    assert {decay[i] for i in norm_params} == {0.0}
    assert {d for i, d in decay.items() if i not in norm_params} == {1e-4}


# --------------------------------------------------------------------------------------
# The two pieces the protocol needs from orl_plugin.transfer.
# --------------------------------------------------------------------------------------
class _ToyDetector(torch.nn.Module):
    """A detector's interface: ``data_preprocessor(data, training)`` and ``forward(mode=...)``;
    its BN only runs in the training forward (as the RoI heads' BN sees training RoIs there)."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(3)
        self.calls = []

    def data_preprocessor(self, data, training):
        self.calls.append(('preprocess', training))
        return dict(inputs=data, data_samples=None)

    def forward(self, inputs, data_samples, mode):
        self.calls.append(('forward', mode))
        if mode == 'loss':
            self.bn(inputs)


def test_precise_bn_averages_training_batches():
    from orl_plugin.transfer.precise_bn_hook import precise_bn_stats
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, generator=g) * (i + 1) + i for i in range(4)]
    det = _ToyDetector().train()
    det.bn.running_mean.fill_(5.0)
    assert precise_bn_stats(det, batches, num_iters=3) == 1
    used = torch.stack(batches[:3])
    torch.testing.assert_close(det.bn.running_mean, used.mean(dim=1).mean(dim=0))
    torch.testing.assert_close(det.bn.running_var, used.var(dim=1, unbiased=True).mean(dim=0))
    assert det.bn.momentum == 0.1  # restored
    assert det.calls[:2] == [('preprocess', True), ('forward', 'loss')] and len(det.calls) == 6


def test_precise_bn_runs_before_each_evaluation_and_at_the_end(synthetic_scenes, tmp_path):
    """In a real mmdet run (the CPU Faster R-CNN R18 on the 64 px scenes, 3 iterations, evaluation
    after iteration 2 and at the end): PreciseBN runs after iterations 2 and 3, each time before
    that step's checkpoint and evaluation, and the checkpoint holds its statistics. About 30 s on a
    loaded 2-core machine: the one end-to-end check of the hook inside mmdet's training."""
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import CheckpointLoader

    import orl_plugin.transfer  # noqa: F401
    root = synthetic_scenes['out_dir'] + '/'
    cfg = Config.fromfile(osp.join(BENCH, 'synthetic', 'faster-rcnn_r18_fpn_1xb8-100i_synthetic.py'))
    cfg.model.backbone.init_cfg = None
    cfg.merge_from_dict({
        'work_dir': str(tmp_path),
        'log_level': 'INFO',
        'train_dataloader.dataset.pipeline.2.scale': (64, 64),  # the scenes' own size
        'val_dataloader.dataset.pipeline.1.scale': (64, 64),
        'custom_hooks': [dict(type='DetPreciseBNHook', num_iters=1)],
        # fewer proposals and RoIs than the CPU config: this checks the order of events only
        'model.train_cfg.rpn_proposal.max_per_img': 50,
        'model.train_cfg.rcnn.sampler.num': 16,
        'model.test_cfg.rpn.max_per_img': 50,
        'train_cfg': dict(type='IterBasedTrainLoop', max_iters=3, val_interval=2),
        'train_dataloader.batch_size': 2,
        'val_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'default_hooks.checkpoint.interval': 2,
        'default_hooks.logger.interval': 1,
        'model.test_cfg.rcnn.score_thr': 0.0,
    })
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].dataset.data_root = root
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    # the context restores the default scope after the run (the Runner sets it to mmdet for good)
    with DefaultScope.overwrite_default_scope('mmdet'):
        runner = Runner.from_cfg(cfg)
        runner.train()
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    events = [
        line for line in log.splitlines() if 'PreciseBN:' in line or 'Saving checkpoint' in line or 'Iter(val)' in line
    ]
    kinds = ['bn' if 'PreciseBN' in e else 'ckpt' if 'Saving' in e else 'val' for e in events]
    kinds = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]  # one 'val' per evaluation
    # after iteration 2: BN, checkpoint, evaluation; after iteration 3 (the last): BN, checkpoint, evaluation
    assert kinds == ['bn', 'ckpt', 'val', 'bn', 'ckpt', 'val'], events
    ckpt = CheckpointLoader.load_checkpoint(osp.join(str(tmp_path), 'iter_3.pth'), map_location='cpu')
    bn = runner.model.backbone.bn1
    torch.testing.assert_close(ckpt['state_dict']['backbone.bn1.running_mean'], bn.running_mean)


def _voc_tree(root) -> str:
    """A one-image VOC2007 tree: a person and a 'difficult' bottle."""
    voc = root / 'VOC2007'
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (voc / sub).mkdir(parents=True)
    (voc / 'ImageSets/Main/trainval.txt').write_text('000001\n')
    ann = ET.Element('annotation')
    ET.SubElement(ann, 'filename').text = '000001.jpg'
    size = ET.SubElement(ann, 'size')
    for k, v in (('width', '100'), ('height', '80'), ('depth', '3')):
        ET.SubElement(size, k).text = v
    for name, difficult, box in (('person', '0', (10, 10, 50, 70)), ('bottle', '1', (60, 20, 80, 60))):
        obj = ET.SubElement(ann, 'object')
        ET.SubElement(obj, 'name').text = name
        ET.SubElement(obj, 'difficult').text = difficult
        bndbox = ET.SubElement(obj, 'bndbox')
        for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
            ET.SubElement(bndbox, k).text = str(v)
    ET.ElementTree(ann).write(voc / 'Annotations' / '000001.xml')
    return str(root) + '/'


@pytest.mark.parametrize(
    'dataset_type,test_mode,flags',
    [
        ('VOCDataset', False, [0, 1]),  # mmdet: the difficult bottle is ignored in training
        ('KeepDifficultVOCDataset', False, [0, 0]),  # detectron2: trained on
        ('KeepDifficultVOCDataset', True, [0, 1]),  # evaluation: ignored, as VOC's protocol
    ])
def test_voc_difficult_objects(tmp_path, dataset_type, test_mode, flags):
    from mmdet.registry import DATASETS

    import orl_plugin.transfer  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = DATASETS.build(
            dict(
                type=dataset_type,
                data_root=_voc_tree(tmp_path),
                ann_file='VOC2007/ImageSets/Main/trainval.txt',
                data_prefix=dict(sub_data_root='VOC2007/'),
                test_mode=test_mode,
                pipeline=[]))
    instances = ds.get_data_info(0)['instances']
    assert [i['ignore_flag'] for i in instances] == flags
    assert [i['bbox_label'] for i in instances] == [ds.metainfo['classes'].index(c) for c in ('person', 'bottle')]


if __name__ == '__main__':
    print('COCO: Mask R-CNN R50-FPN (`' + osp.relpath(COCO_CFG, ROOT) + '`)\n')
    print(markdown(COCO))
    print('\nVOC07+12: Faster R-CNN R50-C4 (`' + osp.relpath(VOC_CFG, ROOT) + '`)\n')
    print(markdown(VOC))
