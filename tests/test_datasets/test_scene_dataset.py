"""Tests of SceneImageDataset: COCO JSON(s) and folders, stable positions, missing files, bad JSON."""
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS

from orl_plugin.datasets.scene_dataset import SceneImageDataset, scene_data_infos
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes

LOAD = [dict(type='LoadImageFromFile')]


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Build by name in mmpretrain's registries even when an earlier test's runner left
    another default scope current."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('scenes'))
    summary = make_synthetic_scenes(root, 10, seed=5, img_size=(64, 48), workers=1)
    return root, summary


def _write(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)
    return str(path)


def test_one_coco_json(scenes):
    root, summary = scenes
    ds = DATASETS.build(
        dict(
            type='SceneImageDataset',
            data_root=root,
            ann_file='annotations/instances.json',
            data_prefix=dict(img_path='images/'),
            pipeline=LOAD))
    assert isinstance(ds, SceneImageDataset)
    coco = json.load(open(summary['ann_file']))
    assert len(ds) == len(coco['images']) == 10
    classes = ds.metainfo['classes']
    assert classes == tuple(c['name'] for c in sorted(coco['categories'], key=lambda c: c['id']))
    cat_to_label = {c['id']: classes.index(c['name']) for c in coco['categories']}
    for i, img in enumerate(coco['images']):
        info = ds.get_data_info(i)
        assert info['sample_idx'] == info['position'] == i
        assert info['img_id'] == img['id'] and info['file_name'] == img['file_name']
        assert info['img_path'] == osp.join(root, 'images', img['file_name'])
        assert (info['width'], info['height']) == (64, 48)
        anns = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        assert info['gt_bboxes'].dtype == np.float32 and info['gt_bboxes'].shape == (len(anns), 4)
        assert info['gt_labels'].dtype == np.int64
        expect = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]]
                           for a in anns],
                          dtype=np.float32).reshape(-1, 4)
        np.testing.assert_allclose(info['gt_bboxes'], expect)
        assert info['gt_labels'].tolist() == [cat_to_label[a['category_id']] for a in anns]
        assert ds.get_cat_ids(i) == info['gt_labels'].tolist()
    out = ds[3]
    assert out['img'].shape == (48, 64, 3) and out['sample_idx'] == 3


def test_scene_data_infos_without_pipeline(scenes):
    # Tools read infos (paths, boxes) of a data set config whatever its pipeline and the caller's scope.
    root, _ = scenes
    cfg = dict(
        data_root=root,
        ann_file='annotations/instances.json',
        data_prefix=dict(img_path='images/'),
        pipeline=[dict(type='NoSuchTransform')])
    with DefaultScope.overwrite_default_scope('mmdet'):
        infos = scene_data_infos(cfg)
        first = scene_data_infos(cfg, limit=3)
    assert [i['position'] for i in infos] == list(range(10))
    assert [i['img_path'] for i in first] == [i['img_path'] for i in infos[:3]]
    assert cfg['pipeline'] == [dict(type='NoSuchTransform')]  # the caller's config is left alone


def test_crowd_and_user_classes(tmp_path, scenes):
    root, summary = scenes
    coco = json.load(open(summary['ann_file']))
    first = coco['images'][0]['id']
    n0 = sum(a['image_id'] == first for a in coco['annotations'])
    coco['annotations'].append(dict(id=10**6, image_id=first, category_id=1, bbox=[0, 0, 10, 10], area=100, iscrowd=1))
    ann = _write(tmp_path / 'crowd.json', coco)
    ds = SceneImageDataset(ann_file=ann, data_prefix=dict(img_path=summary['image_dir']))
    assert len(ds.get_data_info(0)['gt_labels']) == n0  # crowd box skipped
    # A user class order remaps labels; categories outside it are dropped.
    names = [c['name'] for c in coco['categories']]
    ds2 = SceneImageDataset(
        ann_file=ann, data_prefix=dict(img_path=summary['image_dir']), metainfo=dict(classes=names[::-1][:4]))
    assert ds2.metainfo['classes'] == tuple(names[::-1][:4])
    for i in range(len(ds2)):
        labels = ds2.get_data_info(i)['gt_labels']
        assert ((labels >= 0) & (labels < 4)).all()


def test_gt_masks_as_given(tmp_path, scenes):
    root, summary = scenes
    coco = json.load(open(summary['ann_file']))
    img = summary['image_dir']
    ds = SceneImageDataset(ann_file=summary['ann_file'], data_prefix=dict(img_path=img), test_mode=True)
    for i, im in enumerate(coco['images']):  # v2 scenes: one RLE per kept object, aligned with the boxes
        anns = [a for a in coco['annotations'] if a['image_id'] == im['id']]
        assert ds.get_data_info(i)['gt_masks'] == [a['segmentation'] for a in anns]
    assert 'gt_masks' not in SceneImageDataset(
        ann_file=summary['ann_file'], data_prefix=dict(img_path=img), test_mode=True, with_masks=False).get_data_info(0)
    # Training never reads them (COCO's polygons would fill memory): by default only test mode keeps them.
    assert 'gt_masks' not in SceneImageDataset(
        ann_file=summary['ann_file'], data_prefix=dict(img_path=img)).get_data_info(0)
    assert 'gt_masks' in SceneImageDataset(
        ann_file=summary['ann_file'], data_prefix=dict(img_path=img), with_masks=True).get_data_info(0)
    # Polygons pass as given; an image with an object lacking one has no gt_masks; a file without any has none.
    first = coco['images'][0]['id']
    for a in coco['annotations']:
        a['segmentation'] = [[1, 1, 9, 1, 5, 8]] if a['image_id'] == first else a['segmentation']
    coco['annotations'][-1].pop('segmentation')
    last = coco['annotations'][-1]['image_id']
    ds = SceneImageDataset(
        ann_file=_write(tmp_path / 'poly.json', coco), data_prefix=dict(img_path=img), test_mode=True)
    infos = {info['img_id']: info for info in (ds.get_data_info(i) for i in range(len(ds)))}
    assert infos[first]['gt_masks'] == [[[1, 1, 9, 1, 5, 8]]] * len(infos[first]['gt_bboxes'])
    assert 'gt_masks' not in infos[last]
    for a in coco['annotations']:
        a.pop('segmentation', None)
    ds = SceneImageDataset(
        ann_file=_write(tmp_path / 'boxes.json', coco), data_prefix=dict(img_path=img), test_mode=True)
    assert not any('gt_masks' in ds.get_data_info(i) for i in range(len(ds)))


def test_two_jsons_in_order(tmp_path, scenes):
    root, summary = scenes
    train = json.load(open(summary['train_ann_file']))
    val = json.load(open(summary['val_ann_file']))
    # Second source: an image-info file without annotations, images in another folder (like COCO+).
    other = tmp_path / 'unlabeled'
    other.mkdir()
    for img in val['images']:
        shutil.copy(osp.join(summary['image_dir'], img['file_name']), other / img['file_name'])
    info_only = dict(images=val['images'][::-1], categories=val['categories'])
    second = _write(tmp_path / 'image_info.json', info_only)
    ds = SceneImageDataset(
        ann_file=[summary['train_ann_file'], second],
        data_prefix=[dict(img_path=summary['image_dir']),
                     dict(img_path=str(other))],
        pipeline=LOAD)
    assert len(ds) == len(train['images']) + len(val['images'])
    expected = train['images'] + val['images'][::-1]
    for i, img in enumerate(expected):
        info = ds.get_data_info(i)
        assert info['position'] == info['sample_idx'] == i
        assert info['img_id'] == img['id'] and info['file_name'] == img['file_name']
    n = len(train['images'])
    assert 'gt_bboxes' in ds.get_data_info(0) and 'gt_bboxes' not in ds.get_data_info(n)
    assert ds.get_data_info(n)['img_path'] == osp.join(str(other), expected[n]['file_name'])
    assert ds.get_data_info(n)['source'] == second
    assert ds[n]['img'].shape == (48, 64, 3)
    # Positions do not depend on lazy init or on building twice.
    ds2 = SceneImageDataset(
        ann_file=[summary['train_ann_file'], second],
        data_prefix=[dict(img_path=summary['image_dir']),
                     dict(img_path=str(other))],
        lazy_init=True)
    ds2.full_init()
    assert [ds2.get_data_info(i)['file_name'] for i in range(len(ds2))] == [im['file_name'] for im in expected]


def test_conflicting_categories(tmp_path, scenes):
    _, summary = scenes
    coco = json.load(open(summary['ann_file']))
    coco['categories'][0]['name'] = 'something_else'
    bad = _write(tmp_path / 'other_cats.json', coco)
    with pytest.raises(ValueError, match=r'other_cats\.json.*categories'):
        SceneImageDataset(ann_file=[summary['ann_file'], bad])


def test_folder(tmp_path, scenes):
    _, summary = scenes
    folder = tmp_path / 'folder'
    (folder / 'sub').mkdir(parents=True)
    names = sorted(os.listdir(summary['image_dir']))
    for k, name in enumerate(names):
        dst = folder / 'sub' / name if k % 3 == 0 else folder / name
        shutil.copy(osp.join(summary['image_dir'], name), dst)
    (folder / 'notes.txt').write_text('not an image')
    ds = SceneImageDataset(data_root=str(tmp_path), data_prefix=dict(img_path='folder'), pipeline=LOAD)
    rel = sorted(
        osp.relpath(osp.join(dp, f), folder) for dp, _, fs in os.walk(folder) for f in fs if f.endswith('.jpg'))
    assert len(ds) == len(names) == len(rel)
    assert [ds.get_data_info(i)['file_name'] for i in range(len(ds))] == rel
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == list(range(len(ds)))
    assert ds.metainfo['classes'] == ()
    assert 'gt_bboxes' not in ds.get_data_info(0)
    assert ds[len(ds) - 1]['img'].shape == (48, 64, 3)
    with pytest.raises(FileNotFoundError, match='does_not_exist'):
        SceneImageDataset(data_prefix=dict(img_path=str(tmp_path / 'does_not_exist')))


def test_missing_file_lazy_error(tmp_path, scenes):
    _, summary = scenes
    images = tmp_path / 'images'
    shutil.copytree(summary['image_dir'], images)
    coco = json.load(open(summary['ann_file']))
    missing = coco['images'][4]['file_name']
    os.remove(images / missing)
    ds = SceneImageDataset(ann_file=summary['ann_file'], data_prefix=dict(img_path=str(images)), pipeline=LOAD)
    assert len(ds) == 10  # not checked at init by default
    ds[3]
    with pytest.raises(FileNotFoundError) as e:
        ds[4]
    msg = str(e.value)
    assert missing in msg and 'position 4' in msg and summary['ann_file'] in msg


def test_missing_file_check_files_skips(tmp_path, scenes, capsys):
    _, summary = scenes
    images = tmp_path / 'images'
    shutil.copytree(summary['image_dir'], images)
    coco = json.load(open(summary['ann_file']))
    for k in (2, 7):
        os.remove(images / coco['images'][k]['file_name'])
    MMLogger.get_instance(f'test_scene_dataset_skip_{tmp_path.name}', log_level='WARNING')
    ds = SceneImageDataset(
        ann_file=summary['ann_file'], data_prefix=dict(img_path=str(images)), check_files=True, pipeline=LOAD)
    assert 'skipped 2 of 10 images' in capsys.readouterr().out
    assert len(ds) == 8
    assert [s['index'] for s in ds.skipped] == [2, 7]
    assert [s['file_name'] for s in ds.skipped] == [coco['images'][k]['file_name'] for k in (2, 7)]
    positions = [ds.get_data_info(i)['position'] for i in range(len(ds))]
    assert positions == [0, 1, 3, 4, 5, 6, 8, 9]
    for i in range(len(ds)):
        ds[i]


@pytest.mark.parametrize('content,field', [
    (dict(annotations=[], categories=[]), 'images'),
    (dict(images=[dict(id=1, width=4, height=4)]), 'file_name'),
    (dict(images=[dict(file_name='a.jpg')]), 'id'),
    (dict(
        images=[dict(id=1, file_name='a.jpg')],
        annotations=[dict(id=1, image_id=1, category_id=1)],
        categories=[dict(id=1, name='x')]), 'bbox'),
    (dict(images=[dict(id=1, file_name='a.jpg')], categories=[dict(id=1)]), 'name'),
])
def test_malformed_json_names_file_and_field(tmp_path, content, field):
    bad = _write(tmp_path / 'broken_instances.json', content)
    with pytest.raises(ValueError) as e:
        SceneImageDataset(ann_file=bad)
    assert 'broken_instances.json' in str(e.value) and f'"{field}"' in str(e.value)


def test_prefix_count_mismatch(scenes):
    _, summary = scenes
    with pytest.raises(ValueError, match='data_prefix'):
        SceneImageDataset(
            ann_file=[summary['ann_file']] * 2,
            data_prefix=[dict(img_path='a'), dict(img_path='b'),
                         dict(img_path='c')])
