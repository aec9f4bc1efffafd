"""Drawing proposals and mined pairs: images of the right size, CLIs write PNGs."""
import json
import os
import os.path as osp
import runpy
import sys

import cv2
import numpy as np
import pytest
from helpers import ROOT

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.store import MiningStore, write_correspondence_store, write_official_json, write_selective_search_store
from orl_plugin.visualization.drawing import FILTERED_COLOR, RAW_COLOR, draw_pairs, draw_proposals, palette, save_image

DRAW_PROPOSALS = osp.join(ROOT, 'tools', 'visualization', 'draw_proposals.py')
DRAW_PAIRS = osp.join(ROOT, 'tools', 'visualization', 'draw_pairs.py')


def has_color(img, color, tol=30):
    return bool((np.abs(img.astype(int) - np.array(color)).max(-1) <= tol).any())


def test_draw_proposals_colours_and_size():
    img = np.full((60, 80, 3), 128, np.uint8)
    raw = np.array([[2, 3, 30, 20], [10, 10, 40, 40], [50, 5, 20, 50]])
    kept = raw[1:2]
    out = draw_proposals(img, raw, kept, legend=False)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 128).all()  # input untouched
    assert has_color(out, RAW_COLOR) and has_color(out, FILTERED_COLOR)
    only_raw = draw_proposals(img, raw, None, max_raw=1, legend=False)
    assert has_color(only_raw, RAW_COLOR) and not has_color(only_raw, FILTERED_COLOR)
    assert only_raw[3, 60:].tolist() == img[3, 60:].tolist()  # box 3 not drawn (max_raw=1)
    gray = draw_proposals(np.zeros((20, 30), np.uint8), filtered_boxes=[[1, 1, 5, 5]])
    assert gray.shape == (20, 30, 3)


def test_draw_pairs_side_by_side_with_matching_colours():
    q = np.full((50, 70, 3), 100, np.uint8)
    n = np.full((80, 40, 3), 100, np.uint8)
    pairs = np.array([[1, 1, 20, 20, 2, 2, 15, 30], [30, 20, 30, 25, 10, 40, 25, 30]])
    out = draw_pairs(q, n, pairs, gap=6, legend=False)
    assert out.shape == (80, 70 + 6 + 40, 3)
    cols = palette(2)
    assert cols[0] != cols[1]
    for c in cols:  # every pair's colour appears on both sides
        assert has_color(out[:, :70], c, tol=5) and has_color(out[:, 76:], c, tol=5)
    assert (out[50:, :70] == 255).all()  # padding below the shorter image
    assert out.shape == draw_pairs(q, n, np.zeros((0, 8)), gap=6).shape


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('scenes')
    make_synthetic_scenes(str(root), num_images=4, seed=0, img_size=(96, 64), workers=1)
    ann = osp.join(root, 'annotations', 'instances.json')
    with open(ann) as f:
        data = json.load(f)
    return str(root), ann, data


def test_cli_draw_proposals_and_pairs(scenes, tmp_path, monkeypatch, capsys):
    root, ann, data = scenes
    img_root = osp.join(root, 'images')
    names = [im['file_name'] for im in data['images']]
    ids = [im['id'] for im in data['images']]
    sizes = {}
    for im in data['images']:
        sizes[im['file_name']] = cv2.imread(osp.join(img_root, im['file_name'])).shape
    n = len(names)
    rng = np.random.default_rng(0)
    raw = [np.concatenate([rng.integers(0, 30, (20, 2)), rng.integers(5, 30, (20, 2))], 1) for _ in range(n)]
    # official selective-search JSON (no image list) + correspondence store
    ss_store = MiningStore.open(write_selective_search_store(tmp_path / 'ss.orlstore', raw))
    ss_json = write_official_json(ss_store, tmp_path / 'ss.json', include_meta=False)
    knn = np.stack([(i + 1 + np.arange(2)) % n for i in range(n)])
    pairs = [[np.concatenate([raw[i][:3], raw[knn[i, j]][:3]], 1) for j in range(2)] for i in range(n)]
    corr = write_correspondence_store(
        tmp_path / 'c.orlstore', [r[:5] for r in raw], knn, pairs, file_names=names, image_ids=ids)
    out = tmp_path / 'vis'
    monkeypatch.setattr(sys, 'argv', [
        DRAW_PROPOSALS, ss_json, '--filtered', corr, '--images', ann, '--img-root', img_root, '--index', '0', '2',
        '--out',
        str(out / 'prop'), '--gt'
    ])
    runpy.run_path(DRAW_PROPOSALS, run_name='__main__')
    files = sorted(os.listdir(out / 'prop'))
    assert len(files) == 2 and all(f.endswith('.png') for f in files)
    for f, i in zip(files, (0, 2)):
        img = cv2.imread(str(out / 'prop' / f))
        assert img.shape == sizes[names[i]]
        assert has_color(img, FILTERED_COLOR)
    monkeypatch.setattr(sys, 'argv', [
        DRAW_PAIRS, corr, '--img-root', img_root, '--index', '1', '--neighbour', '0', '1', '--out',
        str(out / 'pairs'), '--show-boxes'
    ])
    runpy.run_path(DRAW_PAIRS, run_name='__main__')
    files = sorted(os.listdir(out / 'pairs'))
    assert len(files) == 2
    for f, j in zip(files, (0, 1)):
        img = cv2.imread(str(out / 'pairs' / f))
        hq, wq = sizes[names[1]][:2]
        hn, wn = sizes[names[knn[1, j]]][:2]
        assert img.shape == (max(hq, hn), wq + 10 + wn, 3)
    # an official selective-search JSON alone cannot be drawn without an image list
    monkeypatch.setattr(sys, 'argv',
                        [DRAW_PROPOSALS, ss_json, '--img-root', img_root, '--index', '0', '--out',
                         str(out / 'x')])
    with pytest.raises(SystemExit) as exit_info:  # one line, status 2 (orl_plugin.utils.error_policy)
        runpy.run_path(DRAW_PROPOSALS, run_name='__main__')
    assert exit_info.value.code == 2 and 'has no image list' in capsys.readouterr().err


def test_save_image_is_png(tmp_path):
    img = np.zeros((7, 9, 3), np.uint8)
    p = save_image(img, str(tmp_path / 'a' / 'b.png'))
    assert open(p, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.listdir(tmp_path / 'a') == ['b.png']
