"""ORL stage-3 sampling: ORLDataset, BoxJitter, RoICrop, ORLViews."""
import json
import os.path as osp
from collections import Counter

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS, TRANSFORMS

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.transforms.box_jitter import box_iou_xywh, jitter_box
from orl_plugin.store import MiningStore, write_correspondence_store, write_official_json


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Pipelines name mmpretrain transforms, as under a runner with
    ``default_scope='mmpretrain'``."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


NUM_IMAGES = 6
K = 3
EMPTY_SLOT = 1  # no pairs in this neighbour slot for any image
NO_BOXES = 4  # image without kept boxes -> excluded
NO_PAIRS = 5  # image without any pair -> excluded
PARAMS = dict(
    bbox_min_size=8,
    bbox_max_aspect_ratio=3,
    bbox_max_iou=0.5,
    intra_bbox_num=100,
    knn_image_num=K,
    knn_bbox_pair_ratio=0.1)


def _colour(i):
    """A distinct solid BGR colour per image index."""
    return np.array([(37 * i + 20) % 256, (91 * i + 60) % 256, (151 * i + 100) % 256], dtype=np.uint8)


def _size(i):
    return 64 + 8 * i, 48 + 4 * i  # (w, h)


def _boxes(i):
    if i == NO_BOXES:
        return np.zeros((0, 4), np.int64)
    w, h = _size(i)
    return np.array([[2, 3, 20, 16], [10, 8, 30, 24], [w - 25, h - 21, 24, 20]])


def _knn(i):
    return [(i + d) % NUM_IMAGES for d in (1, 2, 3)]


def _pairs(i, j):
    if j == EMPTY_SLOT or i == NO_PAIRS or i == NO_BOXES:
        return np.zeros((0, 8), np.int64)
    q = _boxes(i)
    return np.array([[*q[0], 1 + j, 1, 12, 10], [*q[2], 5, 6 + j, 20, 22]])


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """Solid-colour PNG images, a COCO image list and a correspondence store
    (plus the same data as official JSON)."""
    root = tmp_path_factory.mktemp('orl_scene')
    (root / 'images').mkdir()
    images = []
    for i in range(NUM_IMAGES):
        w, h = _size(i)
        img = np.empty((h, w, 3), np.uint8)
        img[:] = _colour(i)
        name = f'{i:02d}.png'
        cv2.imwrite(str(root / 'images' / name), img)
        images.append(dict(id=100 + i, file_name=name, width=w, height=h))
    ann = root / 'images.json'
    ann.write_text(json.dumps(dict(images=images, annotations=[], categories=[dict(id=1, name='thing')])))
    names = [im['file_name'] for im in images]
    ids = [im['id'] for im in images]
    store = write_correspondence_store(
        str(root / 'corr.orlstore'), [_boxes(i) for i in range(NUM_IMAGES)],
        np.array([_knn(i) for i in range(NUM_IMAGES)]), [[_pairs(i, j) for j in range(K)] for i in range(NUM_IMAGES)],
        file_names=names,
        image_ids=ids,
        params=PARAMS)
    official = write_official_json(MiningStore.open(store), str(root / 'corr.json'))
    return dict(root=str(root), ann=str(ann), store=store, json=official, names=names, ids=ids)


PACK_KEYS = ('img_path', 'knn_img_path', 'knn_slot', 'knn_store_idx', 'store_idx', 'intra_bbox', 'intra_bbox_jittered',
             'inter_bbox_pair')


def _dataset(scene, correspondence_file=None, **kwargs):
    cfg = dict(
        type='ORLDataset',
        data_root=scene['root'],
        ann_file='images.json',
        data_prefix=dict(img_path='images/'),
        correspondence_file=correspondence_file or 'corr.orlstore',
        pipeline=[
            dict(type='BoxJitter'),
            dict(
                type='ORLViews',
                img_pipelines=[[dict(type='RandomResizedCrop', scale=32)]] * 2,
                patch_pipelines=[[dict(type='RoICrop', size=16)]] * 2),
            dict(type='PackInputs', meta_keys=PACK_KEYS),
        ])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def _solid(t):
    """The single colour of a CHW uint8 tensor (asserting it is solid)."""
    arr = t.numpy().reshape(3, -1)
    assert (arr.max(1).astype(int) - arr.min(1)).max() <= 2
    return arr[:, 0]


# --------------------------------------------------------------------- boxes
def test_box_jitter_stays_inside_with_iou():
    rng = np.random.RandomState(0)
    changed = 0
    total = 0
    for _ in range(60):
        img_w, img_h = rng.randint(40, 300, size=2)
        w = rng.randint(4, img_w + 1)
        h = rng.randint(4, img_h + 1)
        x = rng.randint(0, img_w - w + 1)
        y = rng.randint(0, img_h - h + 1)
        box = np.array([x, y, w, h])
        for _ in range(40):
            out = jitter_box(box, img_w, img_h, rng=rng)
            total += 1
            assert out.dtype == np.int64 and out.shape == (4, )
            assert out[0] >= 0 and out[1] >= 0
            assert out[0] + out[2] <= img_w and out[1] + out[3] <= img_h
            if not np.array_equal(out, box):
                changed += 1
                assert box_iou_xywh(box, out[None])[0] > 0.5
    assert changed > 0.4 * total
    # a box with room around it: real jitter nearly always, over the whole
    # scale and aspect range
    box = np.array([80, 60, 40, 30])
    outs = np.stack([jitter_box(box, 200, 150, rng=rng) for _ in range(500)])
    moved = (outs != box).any(axis=1)
    assert moved.mean() > 0.95
    area = outs[:, 2] * outs[:, 3] / (40 * 30)
    aspect = outs[:, 2] / outs[:, 3]
    assert area.min() < 0.65 and area.max() > 1.6
    assert aspect.min() < 0.7 and aspect.max() > 1.8
    assert (box_iou_xywh(box, outs) > 0.5).all()


def test_box_jitter_transform_seeded_and_fallback():
    t = TRANSFORMS.build(dict(type='BoxJitter'))
    img = np.zeros((120, 160, 3), np.uint8)

    def draw():
        return [t(dict(img=img, intra_bbox=np.array([40, 30, 50, 40])))['intra_bbox_jittered'] for _ in range(20)]

    np.random.seed(7)
    a = draw()
    np.random.seed(7)
    b = draw()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert len({tuple(u) for u in a}) > 10
    # No attempt can satisfy IoU > 1: falls back to the box itself.
    never = TRANSFORMS.build(dict(type='BoxJitter', iou_thr=1.0))
    out = never(dict(img=img, intra_bbox=np.array([40, 30, 50, 40])))
    assert out['intra_bbox_jittered'].tolist() == [40, 30, 50, 40]


def test_roi_crop_takes_the_box():
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:30, 20:50] = (255, 0, 0)
    t = TRANSFORMS.build(dict(type='RoICrop', size=12))
    out = t(dict(img=img, roi_bbox=np.array([20, 10, 30, 20])))
    assert out['img'].shape == (12, 12, 3)
    assert (out['img'] == (255, 0, 0)).all()
    with pytest.raises(ValueError, match='no pixel inside image'):
        t(dict(img=img, roi_bbox=np.array([70, 5, 10, 10]), img_path='x.jpg'))


# --------------------------------------------------------------------- data set
def test_excluded_images_and_len(scene):
    ds = _dataset(scene)
    assert len(ds) == NUM_IMAGES - 2
    assert ds.num_excluded == 2
    idx = [ds.get_data_info(k)['store_idx'] for k in range(len(ds))]
    assert NO_BOXES not in idx and NO_PAIRS not in idx


def test_sampling_semantics(scene):
    ds = _dataset(scene)
    np.random.seed(0)
    slots, intra, inter = Counter(), Counter(), Counter()
    draws = 300
    for _ in range(draws):
        out = ds[0]
        meta = out['data_samples'].metainfo
        i, j, n = meta['store_idx'], meta['knn_slot'], meta['knn_store_idx']
        assert i == 0
        # neighbour from the stored list, never from an empty slot
        assert n == _knn(i)[j] and j != EMPTY_SLOT
        assert meta['knn_img_path'] == osp.join(scene['root'], 'images', scene['names'][n])
        # intra box from the kept boxes, inter pair from pairs(i, j)
        assert any((meta['intra_bbox'] == b).all() for b in _boxes(i))
        assert any((meta['inter_bbox_pair'] == p).all() for p in _pairs(i, j))
        slots[j] += 1
        intra[tuple(meta['intra_bbox'])] += 1
        inter[tuple(meta['inter_bbox_pair'])] += 1
        # jittered partner inside the image, IoU > 0.5 (or the box itself)
        jb = meta['intra_bbox_jittered']
        w, h = _size(i)
        assert jb[0] >= 0 and jb[1] >= 0 and jb[0] + jb[2] <= w \
            and jb[1] + jb[3] <= h
        assert box_iou_xywh(meta['intra_bbox'], jb[None])[0] > 0.5 or \
            (jb == meta['intra_bbox']).all()
        # views: 2 x 32 px image views, 4 x 16 px patches; global and intra
        # views and the first inter patch from the query, the second inter
        # patch from the chosen neighbour
        views = out['inputs']
        assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + \
            [(3, 16, 16)] * 4
        for v in views[:5]:
            assert (_solid(v) == _colour(i)).all()
        assert (_solid(views[5]) == _colour(n)).all()
    # uniform over the non-empty slots, boxes and pairs (loose bounds)
    assert set(slots) == {0, 2}
    assert all(0.35 * draws < c < 0.65 * draws for c in slots.values())
    assert len(intra) == 3 and all(c > 0.2 * draws for c in intra.values())
    assert len(inter) == 4 and all(c > 0.1 * draws for c in inter.values())


def test_store_and_official_json_give_same_samples(scene):
    ds_store = _dataset(scene)
    ds_json = _dataset(scene, correspondence_file='corr.json')
    assert len(ds_store) == len(ds_json)

    def draw(ds):
        np.random.seed(123)
        return [ds[k % len(ds)] for k in range(12)]

    for a, b in zip(draw(ds_store), draw(ds_json)):
        for key in PACK_KEYS:
            ma, mb = a['data_samples'].metainfo, b['data_samples'].metainfo
            assert np.array_equal(ma[key], mb[key]), key
        for va, vb in zip(a['inputs'], b['inputs']):
            assert (va == vb).all()


def test_store_must_match_image_list(scene, tmp_path):
    names = list(reversed(scene['names']))
    bad = write_correspondence_store(
        str(tmp_path / 'bad.orlstore'), [_boxes(i) for i in range(NUM_IMAGES)],
        np.array([_knn(i) for i in range(NUM_IMAGES)]), [[_pairs(i, j) for j in range(K)] for i in range(NUM_IMAGES)],
        file_names=names,
        image_ids=scene['ids'])
    with pytest.raises(ValueError) as err:
        _dataset(scene, correspondence_file=bad)
    assert 'bad.orlstore' in str(err.value) and 'images.json' in str(err.value)

    short = write_correspondence_store(
        str(tmp_path / 'short.orlstore'), [_boxes(i) for i in range(3)],
        np.array([[1, 2, 0], [2, 0, 1], [0, 1, 2]]), [[_pairs(i, j) for j in range(K)] for i in range(3)],
        file_names=scene['names'][:3],
        image_ids=scene['ids'][:3])
    with pytest.raises(ValueError, match='3 images, the image list 6') as err:
        _dataset(scene, correspondence_file=short)
    assert 'short.orlstore' in str(err.value)


def test_corrupt_image_is_redrawn(scene, tmp_path):
    # A copy of the scene with image 2 corrupted.
    import shutil
    root = tmp_path / 'scene'
    shutil.copytree(scene['root'], root)
    (root / 'images' / scene['names'][2]).write_bytes(b'not an image' * 10)
    ds = _dataset(dict(scene, root=str(root)), max_bad_fraction=None)
    bad = [k for k in range(len(ds)) if ds.get_data_info(k)['store_idx'] == 2][0]
    np.random.seed(0)
    for _ in range(10):
        out = ds[bad]
        meta = out['data_samples'].metainfo
        # re-drawn: neither the query nor the neighbour is the bad image
        assert meta['store_idx'] != 2 and meta['knn_store_idx'] != 2
    assert ds.bad_images.bad_indices().tolist() == [2]
    assert ds.bad_images.kind(2) == 'undecodable'


def test_each_sample_decodes_its_two_images_once(scene, monkeypatch):
    """Both images are decoded once per sample; the four RoI patches are cut from those arrays."""
    from orl_plugin.datasets.transforms import loading
    decoded = []
    real = loading.decode_image

    def counting(content, img_path='<bytes>', **kwargs):
        decoded.append(osp.basename(img_path))
        return real(content, img_path, **kwargs)

    monkeypatch.setattr(loading, 'decode_image', counting)
    ds = _dataset(scene)
    np.random.seed(0)
    for k in range(len(ds)):
        decoded.clear()
        meta = ds[k]['data_samples'].metainfo
        assert decoded == [osp.basename(meta['img_path']), osp.basename(meta['knn_img_path'])]
