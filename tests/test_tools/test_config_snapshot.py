"""Every shipped config resolves as it did before the configs were built from ``_base_`` fragments.

``tests/data/configs_a2956d7.json`` holds every config of commit a2956d7 resolved with
``Config.fromfile(...).to_dict()`` (written by ``tests/test_tools/config_snapshot.py``; never rewrite it). The
configs of this tree must resolve to the same values, except the deliberate changes in ``CHANGES``,
each with its reason; a change that no longer changes anything fails too, so the list stays true.
"""
import copy
import fnmatch
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union

import pytest
from config_snapshot import encode, load, resolve, shipped_configs
from helpers import ROOT
from mmengine.config import Config

SNAPSHOT = osp.join(ROOT, 'tests', 'data', 'configs_a2956d7.json')
DROPPED = object()  # the key is gone

# Configs added since the snapshot, with what they are (the measuring instrument's are not shipped: they live in
# projects/orl_evidence/configs, checked by its tests/test_instrument.py).
COCO_90K = 'benchmarks/mmdetection/coco/mask-rcnn_r50-syncbn-4conv1fc_fpn_ms-90k_coco_orl.py'
GPUAUG = 'the CPU config beside it with the photometric augmentation in the data preprocessor'
FOLDER_GPU = ('`orl-pipeline folder` on GPUs, the COCO recipe on a folder of images '
              '(selective search at <= 1024 px)')
FOLDER_CPU = '`orl-pipeline folder` on a CPU, the CPU recipe on a folder of images'
MOCOV2 = 'a MoCo v2 stage 1 and stage 2 from its checkpoint'
CONTRASTIVE = 'ORL stage 3 with the contrastive objective (MoCo v2 form) in every branch, beside the paper\'s BYOL'
NEW_CONFIGS = {
    'orl/stage3/orl-mocov2_resnet18_1xb32-coslr-30e_synthetic.py': CONTRASTIVE,
    'orl/stage3/orl-mocov2_resnet50_8xb64-coslr-800e_coco.py': CONTRASTIVE,
    COCO_90K: "the paper's COCO transfer protocol (detectron2's schedule and PreciseBN), beside mmdet's 1x",
    'byol/byol_resnet50_8xb64-gpuaug-coslr-800e_coco.py': GPUAUG,
    'byol/byol_resnet18_1xb32-gpuaug-coslr-30e_synthetic.py': GPUAUG,
    'orl/stage3/orl_resnet50_8xb64-gpuaug-coslr-800e_coco.py': GPUAUG,
    'orl/stage3/orl_resnet18_1xb16-gpuaug-coslr-30e_synthetic.py': GPUAUG,
    'mocov2/mocov2_resnet18_1xb32-coslr-30e_synthetic.py': MOCOV2,
    'mocov2/mocov2_resnet50_8xb32-coslr-800e_coco.py': MOCOV2,
    'orl/stage2/knn_mocov2-resnet18_1xb64_synthetic.py': MOCOV2,
    'orl/stage2/correspondence_mocov2-resnet18_1xb64_synthetic.py': MOCOV2,
    'orl/stage2/knn_mocov2-resnet50_8xb32_coco.py': MOCOV2,
    'orl/stage2/correspondence_mocov2-resnet50_8xb32_coco.py': MOCOV2,
    'orl/folder/byol_resnet50_8xb64-coslr-800e_folder.py': FOLDER_GPU,
    'orl/folder/knn_byol-resnet50_8xb64_folder.py': FOLDER_GPU,
    'orl/folder/selective-search_8workers_folder.py': FOLDER_GPU,
    'orl/folder/correspondence_byol-resnet50_8xb64_folder.py': FOLDER_GPU,
    'orl/folder/orl_resnet50_8xb64-coslr-800e_folder.py': FOLDER_GPU,
    'orl/folder/byol_resnet18_1xb32-coslr-30e_folder.py': FOLDER_CPU,
    'orl/folder/knn_byol-resnet18_1xb64_folder.py': FOLDER_CPU,
    'orl/folder/selective-search_2workers_folder.py': FOLDER_CPU,
    'orl/folder/correspondence_byol-resnet18_1xb64_folder.py': FOLDER_CPU,
    'orl/folder/orl_resnet18_1xb16-coslr-30e_folder.py': FOLDER_CPU,
}


@dataclass
class Change:
    configs: Sequence[str]  # fnmatch patterns over paths relative to configs/
    keys: Union[str, Sequence[str]]  # dotted paths, list items by index
    value: Any  # the value now, or DROPPED
    reason: str


PLUGIN = ('byol/*', 'orl/*')
STAGE1 = ('byol/*', )
STAGE2_NET = ('orl/stage2/knn_*', 'orl/stage2/correspondence_*')
STAGE2_SS = ('orl/stage2/selective-search_*', )
STAGE3 = ('orl/stage3/*', )
R50 = ('byol/*resnet50*', 'orl/*/*resnet50*')
R18 = ('byol/*resnet18*', 'orl/*/*resnet18*')
CPU_TRAIN = ('byol/*synthetic.py', 'orl/stage3/*synthetic.py')

SCOPE = dict(_scope_='mmpretrain')
NORM_INIT = dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)
OFFICIAL_INIT = [
    dict(type='Kaiming', layer=['Conv2d', 'Linear'], mode='fan_in', nonlinearity='relu', distribution='normal', bias=0),
    dict(NORM_INIT, bias=0),
]
# The ResNet-50 stage-1 and stage-3 COCO training configs (COCO+ inherits them).
COCO_R50_TRAIN = ('byol/byol_resnet50_8xb64-coslr-800e_coco*.py', 'orl/stage3/orl_resnet50_8xb64-coslr-800e_coco*.py')
VIEWS = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets', 'byol_views.py')).to_dict()
MONITORS = {
    name: Config.fromfile(osp.join(ROOT, 'configs', '_base_', name)).to_dict()['custom_hooks']
    for name in ('coco_probes.py', 'synthetic_probes.py')
}
IMAGE_LOADER = dict(type='LoadImageOrSkip', imdecode_backend='pillow')
COCO_TRAIN2017 = dict(
    data_root='data/coco/', ann_file='annotations/instances_train2017.json', data_prefix=dict(img_path='train2017/'))
# The RandomResizedCrop of each stage-3 image view, wherever the resolved config holds it.
STAGE3_VIEW_CROPS = ['view_pipeline1.0', 'view_pipeline2.0'] + [
    f'{where}.img_pipelines.{view}.0' for view in (0, 1)
    for where in ('train_pipeline.1', 'train_dataloader.dataset.pipeline.1')
]
TRAINING_ONLY = ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler', 'auto_scale_lr', 'train_pipeline',
                 'view_pipeline1', 'view_pipeline2', 'max_epochs', 'warmup_epochs', 'dataset_type')

CHANGES: List[Change] = [
    # ------------------------------------------------------------------ all plugin configs
    Change(
        PLUGIN, 'coco_train2017', COCO_TRAIN2017,
        'the image lists, written once (_base_/datasets/scene_lists.py) and inherited as '
        'variables that a config plugs into its data set (e.g. dataset=_base_.coco_plus)'),
    Change(
        PLUGIN, 'coco_plus',
        dict(
            COCO_TRAIN2017,
            ann_file=['annotations/instances_train2017.json', 'annotations/image_info_unlabeled2017.json'],
            data_prefix=[dict(img_path='train2017/'), dict(img_path='unlabeled2017/')]), 'as coco_train2017'),
    Change(
        PLUGIN, 'synthetic_train',
        dict(
            data_root='data/synthetic_scenes/',
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img_path='images/')), 'as coco_train2017'),
    Change(PLUGIN, 'image_folder', dict(data_root='', ann_file='', data_prefix=dict(img_path='data/images/')),
           'the image list of a folder of images (no annotations), written once beside the others'),
    Change(PLUGIN, 'image_loader', IMAGE_LOADER,
           'the one image loader of every stage (_base_/datasets/scene_lists.py)'),
    # ------------------------------------------------------------------ decoding
    Change(
        STAGE1, ('train_pipeline.0', 'train_dataloader.dataset.pipeline.0'), IMAGE_LOADER,
        'stage 1 decodes as stages 2 and 3 do: LoadImageOrSkip with PIL, the official '
        'Image.open().convert("RGB") (was mmcv LoadImageFromFile with cv2)'),
    Change(STAGE3, 'train_dataloader.dataset.imdecode_backend', 'pillow',
           'ORLDataset decodes its images itself: with PIL, as the other stages (was cv2)'),
    # ------------------------------------------------------------------ views
    Change(
        STAGE3, [k + '.interpolation' for k in STAGE3_VIEW_CROPS], 'bilinear',
        "the stage-3 image views are stage 1's (_base_/datasets/byol_views.py), "
        'bilinear like the official torchvision interpolation=2 (were bicubic)'),
    Change(STAGE3, [k + '.crop_ratio_range' for k in STAGE3_VIEW_CROPS], (0.08, 1.0),
           "the stage-1 views state the crop area range; it is RandomResizedCrop's default"),
    # ------------------------------------------------------------------ the CPU path's cost
    Change(COCO_R50_TRAIN[:1],
           ('train_pipeline.0.imdecode_backend', 'train_dataloader.dataset.pipeline.0.imdecode_backend'), 'cv2',
           "COCO's JPEGs decoded with OpenCV, PIL's pixels exactly (test_decoding.py) and cheaper"),
    Change(COCO_R50_TRAIN[1:], 'train_dataloader.dataset.imdecode_backend', 'cv2', 'as stage 1'),
    Change(
        COCO_R50_TRAIN[:1], ('train_pipeline.1', 'train_dataloader.dataset.pipeline.1'),
        dict(type='ImageViews', pipelines=[VIEWS['view_pipeline1'], VIEWS['view_pipeline2']], photometric='opencv'),
        'the two views cut from the decoded image by ImageViews (as ORLViews does in stage 3), '
        "their hue and blur by OpenCV in PIL's arithmetic: the same draws and statistics "
        '(test_fast_photometric.py), less CPU per sample (tools/benchmarks/input_pipeline.py)'),
    Change(COCO_R50_TRAIN[1:], ('train_pipeline.1.photometric', 'train_dataloader.dataset.pipeline.1.photometric'),
           'opencv', 'as stage 1'),
    # ------------------------------------------------------------------ initialisation
    Change(
        R50, ('model.backbone.init_cfg', 'model.neck.init_cfg', 'model.head.predictor.init_cfg'), OFFICIAL_INIT,
        'the official initialisation (OpenSelfSup ResNet and '
        "NonLinearNeckSimCLR init_linear='kaiming'); test_configs.py checks the weights"),
    Change(
        R18, 'model.backbone.init_cfg', [dict(type='Kaiming', layer=['Conv2d']), NORM_INIT],
        "mmpretrain ResNet's default, stated because the fragment the CPU model derives from "
        'sets the official init: the CPU weights are initialised as before '
        '(test_configs.py::test_cpu_models_initialise_as_before)'),
    Change(R18, ('model.neck.init_cfg', 'model.head.predictor.init_cfg'), [NORM_INIT],
           "mmpretrain NonLinearNeck's default, as the CPU backbone's"),
    Change(STAGE3, 'model.backbone.in_channels', 3, "the stage-1 model fragment states it (ResNet's default)"),
    # ------------------------------------------------------------------ stage-1 loaders
    Change(
        STAGE1, 'train_dataloader.drop_last', True,
        "a last batch of one image per rank crashed the projector's BatchNorm1d at the end of an epoch "
        '("Expected more than 1 value per channel"): stage 1 drops its partial batch, as MoCo v2 and stage 3 '
        'do. COCO loses at most one iteration per epoch (8 x 64: 231 of 232; COCO+ 472 of 473); the 1,600 training '
        "images of the documented synthetic scenes make 50 full batches of 32 (no change); the demo's 80 make 2 "
        '(its third batch of 16 is dropped)'),
    # ------------------------------------------------------------------ CPU loaders
    Change(CPU_TRAIN, 'train_dataloader.pin_memory', False,
           'the COCO loader they derive from pins memory; the CPU configs keep the default off'),
    # ------------------------------------------------------------------ stage-3 runtime
    Change(
        STAGE3,
        [f'default_hooks.{h}._scope_' for h in ('timer', 'logger', 'param_scheduler', 'checkpoint', 'sampler_seed')] +
        ['vis_backends.0._scope_', 'visualizer._scope_'], 'mmpretrain',
        "the runtime is mmpretrain's default_runtime (an mmpretrain:: base tags its types with "
        'their scope, which is the default scope already); the stage-3 files wrote it out'),
    Change(STAGE3 + STAGE2_SS, 'default_hooks.visualization', dict(type='VisualizationHook', enable=False, **SCOPE),
           "mmpretrain's default_runtime: a visualisation hook that is off"),
    # ------------------------------------------------------------------ stage 2a / 2c
    Change(
        STAGE2_NET, TRAINING_ONLY + ('view_size', 'custom_hooks'), DROPPED,
        'stage-2 configs inherit a model fragment, not the stage-1 training config: no '
        'training settings (the 2c files set most of them to None)'),
    Change(
        STAGE2_NET, 'default_hooks.checkpoint.interval', 1,
        "mmpretrain's default_runtime instead of stage 1's hooks: checkpoint and logger hooks "
        'act in training only (the mining loops log every test_cfg.log_interval seconds)'),
    Change(STAGE2_NET, 'default_hooks.checkpoint.max_keep_ckpts', DROPPED, 'as above'),
    Change(STAGE2_NET, 'default_hooks.logger.interval', 100, 'as above'),
    Change(STAGE2_NET, 'randomness.seed', None,
           "mmpretrain's default: stage 2 has no randomness (stage 1's CPU config fixes its init)"),
    Change(('orl/stage2/correspondence_*', ), 'test_dataloader.dataset.test_mode', True,
           "the stage-2 loader (_base_/datasets/coco_mining.py) states it; ProposalDataset's default"),
    Change(('orl/stage2/correspondence_*synthetic.py', ), 'test_dataloader.pin_memory', False,
           "the 2c loader states it for COCO; the default, as before"),
    Change(('orl/stage2/knn_*', ), 'test_cfg.feature', dict(type='ImageFeature', feature='auto'),
           "the image feature is a model-side component; 'auto' is the projector of a "
           "self-supervised model (as 'neck' was for BYOL) and the pooled backbone of a classifier"),
    Change(('orl/stage2/correspondence_*', ), 'test_cfg.roi_feature', dict(type='RoIFeature'),
           'the RoI feature is a model-side component (bit-identical embeddings)'),
    Change(('orl/stage2/correspondence_*', ), 'test_cfg.pair_rule', dict(type='TopRatioPairs'),
           'the pair rule is a model-side component (its ratio is topk_bbox_ratio)'),
    # ------------------------------------------------------------------ stage 2b runtime
    Change(STAGE2_SS, 'default_hooks.runtime_info', DROPPED,
           "mmpretrain's default_runtime (the Runner adds this hook anyway)"),
    Change(STAGE2_SS, ('default_hooks.timer._scope_', 'default_hooks.logger._scope_'), 'mmpretrain',
           "mmpretrain's default_runtime, as the stage-3 runtime"),
    Change(STAGE2_SS, 'default_hooks.checkpoint', dict(type='CheckpointHook', interval=1, **SCOPE),
           "mmpretrain's default_runtime: hooks the Runner adds with these defaults anyway"),
    Change(STAGE2_SS, 'default_hooks.param_scheduler', dict(type='ParamSchedulerHook', **SCOPE), 'as above'),
    Change(STAGE2_SS, 'default_hooks.sampler_seed', dict(type='DistSamplerSeedHook', **SCOPE), 'as above'),
    Change(STAGE2_SS, 'randomness', dict(seed=None, deterministic=False),
           "mmpretrain's default_runtime: the Runner's defaults"),
    Change(STAGE2_SS, 'vis_backends', [dict(type='LocalVisBackend', **SCOPE)], "mmpretrain's default_runtime"),
    Change(STAGE2_SS, 'visualizer',
           dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')], **SCOPE),
           "mmpretrain's default_runtime"),
    # ------------------------------------------------------------------ transfer (VOC)
    Change(('benchmarks/mmdetection/voc0712/*', ), 'custom_imports.imports',
           ['orl_plugin', 'orl_plugin.transfer', 'mmpretrain.models.utils.res_layer_extra_norm'],
           "the paper's protocol: the transfer pieces (orl_plugin/transfer)"),
    Change(('benchmarks/mmdetection/voc0712/*', ),
           ('train_dataloader.dataset.datasets.0.type', 'train_dataloader.dataset.datasets.1.type'),
           'KeepDifficultVOCDataset', 'detectron2 trains on the difficult objects'),
    Change(('benchmarks/mmdetection/voc0712/*', ), 'optim_wrapper.paramwise_cfg', dict(norm_decay_mult=0.0),
           'detectron2: no weight decay on norm layers'),
    Change(('benchmarks/mmdetection/voc0712/*', ), 'custom_hooks', [dict(type='DetPreciseBNHook', num_iters=200)],
           'detectron2 TEST.PRECISE_BN (200 iterations) before the evaluation'),
    Change(('benchmarks/mmdetection/voc0712/*', ), 'model.train_cfg.rpn.assigner.min_pos_iou', 0.0,
           "detectron2's RPN matcher: a box's best anchors are positive at any IoU (mmdet: >= 0.3)"),
    Change(('benchmarks/mmdetection/voc0712/*', ), 'train_cfg.val_interval', 24000,
           'detectron2 TEST.EVAL_PERIOD 0: evaluated once, after training'),
    # ------------------------------------------------------------------ several ranks train as one
    Change(('byol/*', 'orl/stage3/*'), 'train_dataloader.sampler.type', 'EvenShardSampler',
           "mmengine's DefaultSampler pads an epoch with repeated images; EvenShardSampler gives every rank the "
           'same number of distinct images: the batches of one rank with the whole batch (test_samplers.py)'),
    # ------------------------------------------------------------------ training monitors
    Change(
        COCO_R50_TRAIN, 'custom_hooks', MONITORS['coco_probes.py'],
        'the monitors of a long run (_base_/coco_probes.py): the object probe on COCO val2017, the collapse '
        'monitor, the NaN guard and the TensorBoard switch (docs/en/user_guides/running_at_scale.md)'),
    Change(('byol/*synthetic.py', ), 'custom_hooks', MONITORS['synthetic_probes.py'],
           'the collapse monitor, the NaN guard and the TensorBoard switch after the held-out probes'),
    Change(COCO_R50_TRAIN + ('byol/*synthetic.py', ), 'tensorboard', False,
           'the TensorBoard switch (TensorboardSwitchHook): off by default'),
]


def _keys(change: Change) -> Tuple[str, ...]:
    return (change.keys, ) if isinstance(change.keys, str) else tuple(change.keys)


def _matches(change: Change, rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in change.configs)


def _get(node: Any, key: str) -> Any:
    for part in key.split('.'):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return DROPPED
    return node


def _set(node: Any, key: str, value: Any) -> None:
    *parents, last = key.split('.')
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DROPPED:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def expected_config(rel: str, before: Dict[str, Any]) -> Dict[str, Any]:
    """``before`` with every change that applies to ``rel``."""
    out = copy.deepcopy(before)
    for change in CHANGES:
        if _matches(change, rel):
            for key in _keys(change):
                if change.value is not DROPPED:
                    _set(out, key, encode(change.value))
                elif _get(out, key) is not DROPPED:
                    _set(out, key, DROPPED)
    return out


def differences(a: Any, b: Any, path: str = '') -> List[str]:
    """Where ``a`` and ``b`` differ, as readable lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f'{path}.{k}' if path else str(k)
            if k not in a:
                out.append(f'{p}: added {b[k]!r:.200}')
            elif k not in b:
                out.append(f'{p}: dropped (was {a[k]!r:.200})')
            else:
                out += differences(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f'{path}.{i}')]
    return [] if a == b else [f'{path}: {a!r:.200} -> {b!r:.200}']


@pytest.fixture(scope='module')
def before() -> Dict[str, Any]:
    return load(SNAPSHOT)['configs']


@pytest.fixture(scope='module')
def now() -> Dict[str, Any]:
    return {rel: resolve(path) for rel, path in shipped_configs(osp.join(ROOT, 'configs')).items()}


def test_same_configs_as_before(before, now):
    assert set(before) <= set(now), f'configs gone: {sorted(set(before) - set(now))}'
    assert set(now) - set(before) == set(NEW_CONFIGS)


@pytest.mark.parametrize('rel', sorted(load(SNAPSHOT)['configs']))
def test_resolves_as_before_but_the_listed_changes(rel, before, now):
    diff = differences(expected_config(rel, before[rel]), now[rel])
    assert not diff, f'{rel} differs from the snapshot beyond CHANGES:\n' + '\n'.join(diff)


def test_every_listed_change_changes_something(before, now):
    for change in CHANGES:
        changed = [(rel, key) for rel in before if _matches(change, rel) for key in _keys(change)
                   if _get(before[rel], key) != _get(now[rel], key)]
        assert changed, f'no config changed as listed: {change}'
        for key in _keys(change):
            assert any(k == key for _, k in changed), f'{key} changed in no config: {change.reason}'
