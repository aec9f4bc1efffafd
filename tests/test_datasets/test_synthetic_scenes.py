"""Tests of the synthetic-scenes generator (orl_plugin.datasets.synthetic_scenes) and its CLI."""
import hashlib
import itertools
import json
import os
import os.path as osp
import runpy

import cv2
import numpy as np
import pytest
from helpers import ROOT
from pycocotools.coco import COCO

from orl_plugin.datasets.synthetic_scenes import CATEGORIES, make_scene_types, make_synthetic_scenes, render_scene


def _read_all(out_dir):
    files = {}
    for root, _, names in os.walk(out_dir):
        for name in names:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, out_dir)] = f.read()
    return files


def _digest(files, suffixes=('.jpg', '.json')):
    h = hashlib.sha256()
    for name in sorted(files):
        if name.endswith(suffixes):
            h.update(name.encode())
            h.update(files[name])
    return h.hexdigest()


@pytest.fixture(scope='module', params=[1, 2], ids=['v1', 'v2'])
def scenes(request, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('scenes'))
    summary = make_synthetic_scenes(out, 24, seed=3, img_size=(128, 96), workers=1, version=request.param)
    return out, summary


def test_version_1_is_unchanged(tmp_path):
    # Hashes of the version-1 output taken with the generator as it was before version 2 existed
    # (commit a2956d7). The JPEG bytes also depend on OpenCV's encoder: compared under the OpenCV the
    # hashes were taken with; the rendered pixels and the JSONs are compared under any.
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    make_synthetic_scenes(a, 6, seed=3, img_size=(128, 96), workers=1, version=1)
    make_synthetic_scenes(b, 3, seed=0, img_size=(256, 256), workers=1, colour_cue=True, version=1)
    files_a, files_b = _read_all(a), _read_all(b)
    assert _digest(files_a, ('.json', )) == 'fb2044464ff949e765f6f248532369312e6ff2c15cd4b14695b5fc873dc9250d'
    assert _digest(files_b, ('.json', )) == '8b15184665e24edf13e142003df06d1058ba2bd0d8bebc52affe8d175d3bdb7f'
    h = hashlib.sha256()
    for seed, n, size, cue in ((3, 6, (128, 96), False), (0, 3, (256, 256), True)):
        for i in range(n):
            img, anns = render_scene(np.random.default_rng(np.random.SeedSequence([seed, i])), size, colour_cue=cue)
            h.update(img.tobytes())
            h.update(repr(anns).encode())
    assert h.hexdigest() == '81ad007965bce8008d2ac95c9495a7a2d84f3ef8ebcd554e399305124db11183'
    if cv2.__version__ == '5.0.0':
        assert _digest(files_a) == '121f468f49e1320e0c1ea6d6738b217912ce5c8bb3dfa82c0286e0e6cfee2d91'
        assert _digest(files_b) == '93b36982960e16a9f7027772c8fbc4a9bcae10ebb8a49b3226791c0c196e9e76'


def test_deterministic_for_a_seed(tmp_path, scenes):
    out, summary = scenes
    # Same seed, different worker count: byte-identical images and JSONs.
    again = str(tmp_path / 'again')
    make_synthetic_scenes(again, 24, seed=3, img_size=(128, 96), workers=2, version=summary['version'])
    a, b = _read_all(out), _read_all(again)
    assert sorted(a) == sorted(b)
    assert all(a[k] == b[k] for k in a)
    assert not any(osp.basename(k).startswith('.tmp_') for k in a)  # no temp files left behind
    # Another seed gives other images.
    other = str(tmp_path / 'other')
    make_synthetic_scenes(other, 3, seed=4, img_size=(128, 96), workers=1, version=summary['version'])
    assert _read_all(other)['images/000000.jpg'] != a['images/000000.jpg']


def test_coco_format_and_boxes(scenes):
    out, summary = scenes
    coco = COCO(summary['ann_file'])
    assert len(coco.getImgIds()) == 24
    assert len(coco.getCatIds()) >= 8 and len(CATEGORIES) >= 8
    names = [c['name'] for c in coco.loadCats(coco.getCatIds())]
    assert len(set(names)) == len(names)
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == summary['num_objects']
    assert len(anns) / 24 >= (3.0 if summary['version'] == 1 else 2.5)
    assert len({a['id'] for a in anns}) == len(anns)
    for a in anns:
        img = coco.imgs[a['image_id']]
        x, y, w, h = a['bbox']
        assert w >= 1 and h >= 1
        assert x >= 0 and y >= 0 and x + w <= img['width'] and y + h <= img['height'], (a, img)
        assert a['iscrowd'] == 0 and 0 < a['area'] <= w * h
        assert a['category_id'] in coco.cats
    for img in coco.dataset['images']:
        arr = cv2.imread(osp.join(summary['image_dir'], img['file_name']))
        assert arr is not None and arr.shape == (img['height'], img['width'], 3) == (96, 128, 3)


def test_objects_cover_several_scales(tmp_path):
    summary = make_synthetic_scenes(str(tmp_path), 40, seed=0, workers=1, version=1)
    anns = json.load(open(summary['ann_file']))['annotations']
    # Longer box side relative to the image side: objects span small to large.
    rel = np.array([max(a['bbox'][2], a['bbox'][3]) / 256 for a in anns])
    assert rel.min() < 0.25 and rel.max() > 0.55
    assert summary['mean_objects_per_image'] >= 3.0
    assert min(summary['objects_per_category'].values()) > 0


def test_scene_types_on_a_ring():
    types = make_scene_types(4, 3)
    assert [t.categories for t in types] == [(0, 1, 2), (2, 3, 4), (4, 5, 6), (0, 6, 7)]
    for a, b in itertools.combinations(range(4), 2):  # neighbours share one category, opposites none
        shared = set(types[a].categories) & set(types[b].categories)
        assert len(shared) == (0 if b - a == 2 else 1)
    assert len({t.hue for t in types}) == 4 and len({t.pattern for t in types}) == 4
    assert [len(t.categories) for t in make_scene_types(8, 2)] == [2] * 8
    with pytest.raises(ValueError, match='categories_per_type'):
        make_scene_types(4, 9)


@pytest.fixture(scope='module')
def v2_scenes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('v2'))
    summary = make_synthetic_scenes(out, 60, seed=0, img_size=(128, 128), workers=1)
    with open(summary['ann_file']) as f:
        return summary, json.load(f)


def test_v2_images_of_a_type_share_categories(v2_scenes):
    summary, coco = v2_scenes
    assert summary['version'] == 2 and coco['info']['version'] == '2'
    types = {t['id']: t for t in coco['scene_types']}
    assert [t['category_ids'] for t in coco['scene_types']] == \
        [[c + 1 for c in t.categories] for t in make_scene_types()]
    cats = {im['id']: set() for im in coco['images']}
    for a in coco['annotations']:
        cats[a['image_id']].add(a['category_id'])
    scene_type = {im['id']: im['scene_type'] for im in coco['images']}
    assert set(scene_type.values()) == set(types)  # every type occurs
    # Most objects are of their image's type (10 % are drawn from all categories).
    in_type = [a['category_id'] in types[scene_type[a['image_id']]]['category_ids'] for a in coco['annotations']]
    assert np.mean(in_type) > 0.85
    same, other = [], []
    for i, j in itertools.combinations([i for i in cats if cats[i]], 2):
        (same if scene_type[i] == scene_type[j] else other).append(bool(cats[i] & cats[j]))
    # images of one type share a category far more often than images of different types
    assert np.mean(same) > 0.85 and np.mean(other) < np.mean(same) - 0.3


def test_v2_objects_and_boxes(v2_scenes):
    summary, coco = v2_scenes
    counts = np.bincount([a['image_id'] for a in coco['annotations']], minlength=61)[1:]
    assert counts.max() <= 6 and 3.0 <= counts.mean() <= 5.5
    rel = np.array([max(a['bbox'][2], a['bbox'][3]) / 128 for a in coco['annotations']])
    assert rel.min() >= 0.1 and np.quantile(rel, 0.9) < 0.75 and rel.max() > 0.45
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= 128 and y + h <= 128
    # instance variation: a category's objects differ in hue
    hues = _object_hues(summary)
    assert all((h > 0).sum() >= 3 for h in hues.values())


def test_v2_visible_masks(v2_scenes):
    from pycocotools import mask as mask_utils
    _, coco = v2_scenes
    by_image = {im['id']: [] for im in coco['images']}
    for a in coco['annotations']:
        by_image[a['image_id']].append(a)
    for anns in by_image.values():
        covered = np.zeros((128, 128), np.int32)
        for a in anns:
            rle = a['segmentation']
            assert rle['size'] == [128, 128] and isinstance(rle['counts'], str)
            m = mask_utils.decode(dict(rle, counts=rle['counts'].encode())).astype(bool)
            assert m.sum() == a['area'] == mask_utils.area(rle) > 0  # the visible pixels, counted as area
            x, y, w, h = (int(v) for v in a['bbox'])
            outside = m.copy()
            outside[y:y + h, x:x + w] = False
            assert not outside.any()  # inside the object's box
            covered += m
        assert covered.max() <= 1  # a pixel shows one object at most
    # v1 files have no masks (they stay byte-identical, see test_version_1_is_unchanged)


def test_v2_options_move_the_design(tmp_path):
    base = dict(num_images=24, seed=1, img_size=(96, 96), workers=1)
    one = make_synthetic_scenes(
        str(tmp_path / 'one'), scene_types=1, categories_per_type=2, out_of_type=0.0, num_objects=(3, 3), **base)
    with open(one['ann_file']) as f:
        coco = json.load(f)
    assert {a['category_id'] for a in coco['annotations']} <= {1, 2}
    assert {im['scene_type'] for im in coco['images']} == {1}
    assert coco['info']['scene_types'] == 1 and coco['info']['clutter'] == [0, 3]
    assert max(np.bincount([a['image_id'] for a in coco['annotations']])) <= 3

    def clutter_pixels(clutter):
        # No objects: what differs from the smooth background is clutter (compare with none).
        out = {}
        for c in ((0, 0), clutter):
            s = make_synthetic_scenes(
                str(tmp_path / f'c{c[1]}'), num_objects=(0, 0), clutter=c, background_texture=0.0, **base)
            out[c] = np.stack([cv2.imread(osp.join(s['image_dir'], f'{i:06d}.jpg')).astype(int) for i in range(24)])
        return float((np.abs(out[clutter] - out[(0, 0)]).max(axis=3) > 40).mean())

    assert clutter_pixels((20, 20)) > 5 * clutter_pixels((1, 1)) > 0


def test_train_val_split(scenes):
    _, summary = scenes
    full = json.load(open(summary['ann_file']))
    train = json.load(open(summary['train_ann_file']))
    val = json.load(open(summary['val_ann_file']))
    assert summary['num_val'] == len(val['images']) == round(0.2 * 24)
    # Val is the last images, train the first, together the whole set with its annotations.
    assert train['images'] + val['images'] == full['images']
    assert train['annotations'] + val['annotations'] == full['annotations']
    assert train['categories'] == val['categories'] == full['categories']
    COCO(summary['val_ann_file'])


def _object_hues(summary):
    """Per category: the hue (OpenCV 0-179) of saturated pixels at each object's centre."""
    coco = COCO(summary['ann_file'])
    hues = {c: [] for c in coco.cats}
    for img in coco.dataset['images']:
        hsv = cv2.cvtColor(cv2.imread(osp.join(summary['image_dir'], img['file_name'])), cv2.COLOR_BGR2HSV)
        for a in coco.imgToAnns[img['id']]:
            x, y, w, h = (int(v) for v in a['bbox'])
            cx, cy = x + w // 2, y + h // 2
            patch = hsv[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].reshape(-1, 3)
            hues[a['category_id']].extend(patch[patch[:, 1] > 120, 0].tolist())
    return {c: np.bincount(np.asarray(h) // 10, minlength=18) for c, h in hues.items() if len(h) > 20}


def test_colour_cue_only_changes_colours(tmp_path):
    # With the colour cue every category has its own colour family (one dominant hue bin each,
    # distinct across categories); without it (the default) hues spread over the wheel. Objects,
    # boxes and categories are the same either way.
    cue = make_synthetic_scenes(str(tmp_path / 'cue'), 30, seed=1, img_size=(160, 160), workers=1, colour_cue=True)
    free = make_synthetic_scenes(str(tmp_path / 'free'), 30, seed=1, img_size=(160, 160), workers=1)
    with open(cue['ann_file']) as f1, open(free['ann_file']) as f2:
        a1, a2 = json.load(f1), json.load(f2)
    assert a1['info']['colour_cue'] is True and a2['info']['colour_cue'] is False
    assert [(a['category_id'], a['bbox']) for a in a1['annotations']] == \
        [(a['category_id'], a['bbox']) for a in a2['annotations']]

    def dominance(hist):  # share of the pixels in the two most common adjacent hue bins
        h = hist / hist.sum()
        return max(h[i] + h[(i + 1) % len(h)] for i in range(len(h)))

    cue_hues, free_hues = _object_hues(cue), _object_hues(free)
    assert len(cue_hues) >= 5 and len(free_hues) >= 5
    assert len({int(np.argmax(h)) for h in cue_hues.values()}) >= 5
    assert np.median([dominance(h) for h in cue_hues.values()]) > 0.8
    assert np.median([dominance(h) for h in free_hues.values()]) < 0.45


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_images'):
        make_synthetic_scenes(str(tmp_path), 0)
    with pytest.raises(ValueError, match='val_fraction'):
        make_synthetic_scenes(str(tmp_path), 2, val_fraction=1.0)
    with pytest.raises(ValueError, match='version'):
        make_synthetic_scenes(str(tmp_path), 2, version=3)
    with pytest.raises(ValueError, match='version 1 scenes take none of the version-2 options; got clutter'):
        make_synthetic_scenes(str(tmp_path), 2, version=1, clutter=(0, 0))
    with pytest.raises(ValueError, match='clutter'):
        make_synthetic_scenes(str(tmp_path), 2, clutter=(3, 1))
    with pytest.raises(ValueError, match='out_of_type'):
        make_synthetic_scenes(str(tmp_path), 2, out_of_type=1.5)


def test_cli(tmp_path, capsys):
    # In-process (a subprocess would spend most of the test importing the OpenMMLab stack again).
    tool = runpy.run_path(osp.join(ROOT, 'tools/data/make_synthetic_scenes.py'), run_name='cli_under_test')
    out = tmp_path / 'cli'
    assert tool['main'](
        ['--out',
         str(out), '--num-images', '5', '--seed', '2', '--img-size', '64', '48', '--val-fraction', '0.4']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['num_images'] == 5 and summary['num_val'] == 2 and summary['version'] == 2
    assert len(os.listdir(out / 'images')) == 5
    assert json.load(open(out / 'annotations' / 'instances.json'))['images'][0]['width'] == 64
    # version-2 options reach the generator; version 1 refuses them in one line
    assert tool['main']([
        '--out',
        str(tmp_path / 'o'), '--num-images', '3', '--img-size', '64', '64', '--scene-types', '2', '--clutter', '0', '0',
        '--num-objects', '1', '2'
    ]) == 0
    info = json.load(open(tmp_path / 'o' / 'annotations' / 'instances.json'))['info']
    assert info['scene_types'] == 2 and info['clutter'] == [0, 0] and info['num_objects'] == [1, 2]
    assert tool['main'](
        ['--out', str(tmp_path / 'v1'), '--num-images', '2', '--img-size', '64', '64', '--scene-version', '1']) == 0
    assert json.load(open(tmp_path / 'v1' / 'annotations' / 'instances.json'))['info']['version'] == '1'
    with pytest.raises(SystemExit):
        tool['main'](['--out', str(tmp_path / 'x'), '--num-images', '2', '--scene-version', '1', '--clutter', '0', '0'])
    assert '--clutter: version-2 options' in capsys.readouterr().err
