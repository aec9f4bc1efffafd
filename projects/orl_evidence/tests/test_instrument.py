"""The measuring instrument: a classifier trained with ground-truth labels on ground-truth object
crops. Its data set, its configs, a few training iterations, and that no ORL config ever selects it."""
import glob
import os
import os.path as osp

import mmcv
import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.synthetic_scenes import CATEGORIES, make_synthetic_scenes
from orl_plugin.datasets.transforms.crop_boxes import crop_boxes
from projects.orl_evidence.datasets import ObjectCropDataset, context_box

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
INSTRUMENT_DIR = osp.join(ROOT, 'projects', 'orl_evidence', 'configs', 'instrument')
INSTRUMENT_CONFIGS = sorted(glob.glob(osp.join(INSTRUMENT_DIR, '**', '*.py'), recursive=True))
TOP_LEVEL = [p for p in INSTRUMENT_CONFIGS if '_base_' not in osp.relpath(p, INSTRUMENT_DIR).split(os.sep)]
OTHER_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))  # the shipped ones


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('instrument_scenes'))
    make_synthetic_scenes(root, 10, seed=0, img_size=(96, 96), workers=1)  # 8 train, 2 val
    return root


def test_context_box():
    # 10 % of the 40 x 20 box on every side, clipped to the 100 x 50 image at the right.
    np.testing.assert_array_equal(context_box([10, 10, 50, 30], 0.1, 100, 50), [6, 8, 48, 24])
    np.testing.assert_array_equal(context_box([70, 0, 100, 20], 0.1, 100, 50), [67, 0, 33, 22])
    np.testing.assert_array_equal(context_box([70, 0, 100, 20], 0.0), [70, 0, 30, 20])


def test_object_crop_dataset(scenes):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RoICrop', size=32, box_key='roi_bbox'),
        dict(type='PackInputs')
    ]
    ds = ObjectCropDataset(
        ann_file='annotations/instances_train.json',
        data_root=scenes,
        data_prefix=dict(img_path='images/'),
        context=0.1,
        pipeline=pipeline)
    coco = mmengine.load(osp.join(scenes, 'annotations', 'instances_train.json'))
    anns = coco['annotations']
    assert len(ds) == len(anns) > 8
    assert ds.metainfo['classes'] == tuple(c['name'] for c in CATEGORIES)
    for i, a in enumerate(anns):  # one sample per object, in annotation order, labelled by its category
        info = ds.get_data_info(i)
        assert info['gt_label'] == a['category_id'] - 1
        x, y, w, h = a['bbox']
        rx, ry, rw, rh = info['roi_bbox']
        assert rx <= x and ry <= y and rx + rw >= x + w and ry + rh >= y + h  # holds the object
        assert rx >= 0 and ry >= 0 and rx + rw <= 96 and ry + rh <= 96  # inside the image
    sample = ds[0]
    assert tuple(sample['inputs'].shape) == (3, 32, 32)
    assert int(sample['data_samples'].gt_label) == anns[0]['category_id'] - 1
    # the crop is the project's 2c crop of that box
    img = mmcv.imread(ds.get_data_info(0)['img_path'])
    expected = crop_boxes(img, ds.get_data_info(0)['roi_bbox'][None], 32)[0]
    np.testing.assert_array_equal(sample['inputs'].permute(1, 2, 0).numpy(), expected)


def test_object_crop_dataset_needs_annotations(tmp_path, scenes):
    content = mmengine.load(osp.join(scenes, 'annotations', 'instances_val.json'))
    del content['annotations']
    mmengine.dump(content, str(tmp_path / 'no_anns.json'))
    with pytest.raises(ValueError, match='no "annotations"'):
        ObjectCropDataset(ann_file=str(tmp_path / 'no_anns.json'), data_prefix=dict(img_path=scenes))


def test_instrument_trains_and_reports_held_out_accuracy(scenes, tmp_path):
    cfg = Config.fromfile(
        osp.join(INSTRUMENT_DIR, 'instrument-gt-classifier_resnet18_1xb32-coslr-6e_synthetic-crops.py'))
    options = {'train_cfg.max_epochs': 1, 'default_hooks.logger.interval': 1}
    for split in ('train', 'val', 'test'):
        options.update({
            f'{split}_dataloader.batch_size': 16, f'{split}_dataloader.num_workers': 0,
            f'{split}_dataloader.persistent_workers': False, f'{split}_dataloader.dataset.data_root': scenes,
            f'{split}_dataloader.dataset.pipeline.1.size': 32
        })
    cfg.merge_from_dict(options)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
    assert 0.0 <= top1 <= 100.0
    assert runner.iter == int(np.ceil(len(runner.train_dataloader.dataset) / 16))
    # A training checkpoint like any other (weights_only; publish_model.py makes a plain one).
    sd = torch.load(osp.join(cfg.work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('backbone.') for k in sd) and 'head.norm_product.weight' in sd


def test_the_instrument_is_labelled():
    for path in INSTRUMENT_CONFIGS:
        assert osp.basename(path).startswith('instrument')
        with open(path) as f:
            assert f.readline().startswith('# MEASURING INSTRUMENT, NOT ORL')
        cfg = Config.fromfile(path)
        assert cfg.model.type == 'ImageClassifier'
        if 'train_dataloader' in cfg:  # the instrument's training
            assert cfg.train_dataloader.dataset.type == cfg.val_dataloader.dataset.type == 'ObjectCropDataset'
        elif 'test_cfg' in cfg:  # its stage-2 configs: a mining step with the instrument as the stage-1 model
            assert cfg.test_cfg.type in ('KNNMiningLoop', 'CorrespondenceLoop'), path
    assert len(INSTRUMENT_CONFIGS) == 4


@pytest.mark.parametrize('path', TOP_LEVEL, ids=[osp.basename(p) for p in TOP_LEVEL])
def test_instrument_configs_load_like_the_shipped_ones(path):
    """What tests/test_tools/test_configs.py checks of every shipped config: the plugin loaded (and the project, which
    registers the crop data set), no import allowed to fail, the scope, the workers, the one image decoder."""
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['orl_plugin', 'projects.orl_evidence'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmpretrain'
    loaders = {k: cfg[k] for k in ('train_dataloader', 'val_dataloader', 'test_dataloader') if k in cfg}
    assert loaders, path
    for key, loader in loaders.items():
        assert loader.get('num_workers', 0) or not loader.get('persistent_workers', False), key
        steps = [v for k, v in _walk(loader.to_dict()) if k.endswith('type') and str(v).startswith('LoadImage')]
        assert steps == ['LoadImageOrSkip'] * len(steps) and steps, key  # the one decoder of every stage
        backends = {v for k, v in _walk(loader.to_dict()) if k.endswith('imdecode_backend')}
        assert backends == {'pillow'}, key


def test_the_crop_data_set_is_the_projects():
    from mmpretrain.registry import DATASETS
    assert DATASETS.get('ObjectCropDataset') is ObjectCropDataset
    assert ObjectCropDataset.__module__ == 'projects.orl_evidence.datasets.object_crops'
    assert not hasattr(orl_plugin.datasets, 'ObjectCropDataset')


def _walk(value, path=''):
    """(key path, value) of every leaf of a config."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f'{path}.{k}' if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f'{path}.{i}')
    else:
        yield path, value


@pytest.mark.parametrize('path', OTHER_CONFIGS, ids=[osp.relpath(p, ROOT) for p in OTHER_CONFIGS])
def test_no_orl_config_selects_the_instrument(path):
    # Neither its data (ground-truth labels) nor its config, work dir or checkpoint. (A classifier
    # model type alone is allowed: stage 2 may take any classifier's checkpoint.)
    cfg = Config.fromfile(path)
    for key, value in _walk(cfg.to_dict()):
        if isinstance(value, str):
            assert 'instrument' not in value.lower(), f'{path}: {key} = {value!r}'
            assert value != 'ObjectCropDataset', f'{path}: {key} selects the instrument data'
