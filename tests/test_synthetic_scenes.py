"""Tests of the synthetic-scenes generator (orl_plugin.datasets.synthetic_scenes) and its CLI."""
import json
import os
import os.path as osp
import runpy

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from orl_plugin.datasets.synthetic_scenes import CATEGORIES, make_synthetic_scenes

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _read_all(out_dir):
    files = {}
    for root, _, names in os.walk(out_dir):
        for name in names:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, out_dir)] = f.read()
    return files


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('scenes'))
    summary = make_synthetic_scenes(out, 24, seed=3, img_size=(128, 96), workers=1)
    return out, summary


def test_deterministic_for_a_seed(tmp_path, scenes):
    out, _ = scenes
    # Same seed, different worker count: byte-identical images and JSONs.
    again = str(tmp_path / 'again')
    make_synthetic_scenes(again, 24, seed=3, img_size=(128, 96), workers=2)
    a, b = _read_all(out), _read_all(again)
    assert sorted(a) == sorted(b)
    assert all(a[k] == b[k] for k in a)
    assert not any(osp.basename(k).startswith('.tmp_') for k in a)  # no temp files left behind
    # Another seed gives other images.
    other = str(tmp_path / 'other')
    make_synthetic_scenes(other, 3, seed=4, img_size=(128, 96), workers=1)
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
    assert len(anns) / 24 >= 3.0
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
    summary = make_synthetic_scenes(str(tmp_path), 40, seed=0, workers=1)
    anns = json.load(open(summary['ann_file']))['annotations']
    # Longer box side relative to the image side: objects span small to large.
    rel = np.array([max(a['bbox'][2], a['bbox'][3]) / 256 for a in anns])
    assert rel.min() < 0.25 and rel.max() > 0.55
    assert summary['mean_objects_per_image'] >= 3.0
    assert min(summary['objects_per_category'].values()) > 0


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
    cue = make_synthetic_scenes(str(tmp_path / 'cue'), 30, seed=1, img_size=(160, 160), workers=1,
                                colour_cue=True)
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


def test_cli(tmp_path, capsys):
    # In-process (a subprocess would spend most of the test importing the OpenMMLab stack again).
    tool = runpy.run_path(osp.join(REPO, 'tools/data/make_synthetic_scenes.py'), run_name='cli_under_test')
    out = tmp_path / 'cli'
    assert tool['main'](['--out', str(out), '--num-images', '5', '--seed', '2', '--img-size', '64', '48',
                         '--val-fraction', '0.4']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['num_images'] == 5 and summary['num_val'] == 2
    assert len(os.listdir(out / 'images')) == 5
    assert json.load(open(out / 'annotations' / 'instances.json'))['images'][0]['width'] == 64
