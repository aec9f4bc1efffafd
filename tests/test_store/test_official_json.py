"""Official ORL JSON files: validation, lossless JSON <-> store round trips (API and CLIs)."""
import copy
import json
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
from helpers import ROOT

from orl_plugin.store import MiningStore, OfficialFormatError, load_image_list, write_official_json

TO_STORE = osp.join(ROOT, 'tools', 'dataset_converters', 'orl_json_to_store.py')
TO_JSON = osp.join(ROOT, 'tools', 'dataset_converters', 'store_to_orl_json.py')

N, K = 7, 3
INFO = dict(
    bbox_min_size=96,
    bbox_max_aspect_ratio=3,
    bbox_max_iou=0.5,
    intra_bbox_num=100,
    knn_image_num=K,
    knn_bbox_pair_ratio=0.1)


def official(kind, seed=0):
    """A small official-format file of each kind, as the official code writes them."""
    rng = np.random.default_rng(seed)
    names = [f'{i:012d}.jpg' for i in range(N)]
    ids = [int(v) for v in rng.choice(100000, N, replace=False)]
    images = {'file_name': names, 'id': ids}
    knn = [[(i + 1 + j) % N for j in range(K)] for i in range(N)]
    boxes = [rng.integers(0, 640, (int(rng.integers(1, 9)), 4)).tolist() for _ in range(N)]
    if kind == 'selective_search':
        return {'bbox': boxes}
    if kind == 'knn':
        return {
            'info': {'knn_image_num': K}, 'images': images,
            'pseudo_annotations': {'image_id': list(ids), 'knn_image_id': knn}
        }
    # every neighbour of image i has int(0.1 * B_i) >= 1 pairs; one image is ragged on purpose
    pairs = [[rng.integers(0, 640, (max(1, len(boxes[i]) // 3), 8)).tolist() for _ in range(K)] for i in range(N)]
    pairs[2][1] = pairs[2][1] + [[1, 2, 3, 4, 5, 6, 7, 8]]
    return {
        'info': dict(INFO), 'images': images,
        'pseudo_annotations': {'image_id': list(ids), 'bbox': boxes, 'knn_image_id': knn, 'knn_bbox_pair': pairs}
    }


def dump(obj, path):
    with open(path, 'w') as f:
        json.dump(obj, f)
    return str(path)


def coco_images(path, data):
    """A COCO-format file listing the official file's images (for --images)."""
    images = data.get('images') or {'file_name': [f'{i:012d}.jpg' for i in range(N)], 'id': list(range(1, N + 1))}
    coco = {
        'images': [{'file_name': f, 'id': i, 'width': 640, 'height': 480}
                   for f, i in zip(images['file_name'], images['id'])], 'annotations': [], 'categories': []
    }
    return dump(coco, path)


@pytest.mark.parametrize('kind', ['selective_search', 'knn', 'correspondence'])
def test_api_round_trip_is_lossless(tmp_path, kind):
    data = official(kind)
    src = dump(data, tmp_path / f'{kind}.json')
    store = MiningStore.open(src)
    assert store.kind == kind and store.num_images == N and store.source == 'official_json'
    store.save(tmp_path / 'x.orlstore')
    native = MiningStore.open(tmp_path / 'x.orlstore')
    out = write_official_json(native, tmp_path / 'back.json', include_meta=False)
    assert json.load(open(out)) == data
    if kind == 'correspondence':
        assert native.params == INFO
        np.testing.assert_array_equal(native.pairs(2, 1), data['pseudo_annotations']['knn_bbox_pair'][2][1])
        np.testing.assert_array_equal(native.boxes(5), data['pseudo_annotations']['bbox'][5])
    if kind != 'selective_search':
        assert native.file_name(3) == data['images']['file_name'][3]
        assert native.image_ids.tolist() == data['images']['id']


@pytest.mark.parametrize('kind', ['selective_search', 'knn', 'correspondence'])
def test_cli_round_trip_is_lossless(tmp_path, kind, monkeypatch, capsys):
    data = official(kind, seed=3)
    src = dump(data, tmp_path / f'{kind}.json')
    ann = coco_images(tmp_path / 'instances.json', data)
    store_dir = str(tmp_path / f'{kind}.orlstore')
    back = str(tmp_path / 'back.json')
    monkeypatch.setattr(sys, 'argv', [TO_STORE, src, store_dir, '--images', ann])
    runpy.run_path(TO_STORE, run_name='__main__')
    store = MiningStore.open(store_dir)
    assert store.kind == kind and store.has_image_list
    assert store.provenance['converted_from'] == src
    monkeypatch.setattr(sys, 'argv', [TO_JSON, store_dir, back, '--official-only'])
    runpy.run_path(TO_JSON, run_name='__main__')
    assert json.load(open(back)) == data
    # with the extra keys (default) the store survives JSON -> store unchanged, image list too
    monkeypatch.setattr(sys, 'argv', [TO_JSON, store_dir, back])
    runpy.run_path(TO_JSON, run_name='__main__')
    again = MiningStore.open(back)
    assert again.file_names() == store.file_names()
    assert again.image_ids.tolist() == store.image_ids.tolist()
    assert again.provenance == store.provenance and again.params == store.params
    for name in ('boxes', 'box_offsets', 'knn', 'pairs', 'pair_offsets'):
        if name in store._arrays:
            np.testing.assert_array_equal(again.array(name), store.array(name))


def test_selective_search_image_list(tmp_path):
    data = official('selective_search')
    src = dump(data, tmp_path / 'ss.json')
    plain = MiningStore.open(src)
    assert not plain.has_image_list and plain.image_ids.tolist() == [-1] * N
    ann = coco_images(tmp_path / 'instances.json', {})
    named = MiningStore.open(src, images=ann)
    assert named.has_image_list and named.file_name(4) == '000000000004.jpg'
    assert named.image_ids.tolist() == list(range(1, N + 1))
    # an image folder works too: sorted names, ids = positions
    folder = tmp_path / 'imgs'
    folder.mkdir()
    for i in range(N):
        (folder / f'{i:012d}.jpg').write_bytes(b'')
    (folder / 'readme.txt').write_text('not an image')
    (folder / 'sub').mkdir()
    (folder / 'sub' / 'A.JPG').write_bytes(b'')
    names, ids = load_image_list(str(folder))  # recursive, sorted, as SceneImageDataset
    assert names == [f'{i:012d}.jpg' for i in range(N)] + ['sub/A.JPG']
    assert ids.tolist() == list(range(N + 1))
    short = dump({'images': [{'file_name': 'a.jpg', 'id': 1}]}, tmp_path / 'one.json')
    with pytest.raises(OfficialFormatError, match=r'ss\.json: has boxes for 7 images but the given image list has 1'):
        MiningStore.open(src, images=short)
    other = official('knn')
    other['images']['file_name'][5] = 'zzz.jpg'
    with pytest.raises(
            OfficialFormatError, match=r"images\.file_name\[5\] = '0+5\.jpg' but the "
            r"given image list has 'zzz\.jpg'"):
        MiningStore.open(
            dump(official('knn'), tmp_path / 'knn.json'), images=coco_images(tmp_path / 'other.json', other))


MALFORMED = [
    ('correspondence', lambda d: d['pseudo_annotations']['knn_bbox_pair'][4].pop(),
     r'correspondence\.json: pseudo_annotations\.knn_bbox_pair\[4\] has 2 neighbours, '
     r'expected 3'),
    ('correspondence', lambda d: d['pseudo_annotations']['knn_bbox_pair'][3][0][0].pop(),
     r'pseudo_annotations\.knn_bbox_pair\[3\]\[0\]\[0\] has 7 numbers, expected 8'),
    ('correspondence', lambda d: d['pseudo_annotations']['bbox'][6].append([1, 2, 3]),
     r'pseudo_annotations\.bbox\[6\]\[\d+\] has 3 numbers, expected 4'),
    ('correspondence', lambda d: d['pseudo_annotations']['bbox'][1].append([1, 2, 'x', 4]),
     r'pseudo_annotations\.bbox\[1\]\[\d+\] = \[1, 2, .x., 4\] is not all numbers'),
    ('correspondence', lambda d: d['pseudo_annotations']['bbox'][1].append([1, 2, 3.5, 4]),
     r'pseudo_annotations\.bbox\[1\]\[\d+\] = \[1, 2, 3\.5, 4\] has non-integer values'),
    ('correspondence', lambda d: d['pseudo_annotations']['bbox'].pop(),
     r'pseudo_annotations\.bbox has 6 entries, expected 7'),
    ('correspondence', lambda d: d['info'].pop('bbox_max_iou'),
     r'correspondence\.json: field "info\.bbox_max_iou" is missing'),
    ('correspondence', lambda d: d['pseudo_annotations'].pop('knn_bbox_pair'),
     r'field "pseudo_annotations\.knn_bbox_pair" is missing'),
    ('knn', lambda d: d['info'].pop('knn_image_num'), r'knn\.json: field "info\.knn_image_num" is missing'),
    ('knn', lambda d: d['pseudo_annotations']['knn_image_id'][5].append(0),
     r'knn\.json: pseudo_annotations\.knn_image_id\[5\] has 4 neighbours, expected 3'),
    ('knn', lambda d: d['pseudo_annotations']['knn_image_id'][2].__setitem__(1, 7),
     r'pseudo_annotations\.knn_image_id\[2\] = \[\d+, 7, \d+\] has positions outside \[0, 7\)'),
    ('knn', lambda d: d['pseudo_annotations']['image_id'].__setitem__(3, -5),
     r'pseudo_annotations\.image_id\[3\] = -5 differs from images\.id\[3\]'),
    ('knn', lambda d: d['images']['id'].pop(), r'images\.file_name has 7 entries but images\.id has 6'),
    ('knn', lambda d: d['images']['file_name'].__setitem__(2, 17), r'images\.file_name\[2\] is int, expected str'),
    ('knn', lambda d: d.pop('images'), r'knn\.json: field "images" is missing'),
    ('knn', lambda d: d['info'].__setitem__('knn_image_num', '10'),
     r'field "info\.knn_image_num" is str, expected int'),
    ('selective_search', lambda d: d['bbox'].__setitem__(3, {'x': 1}),
     r'selective_search\.json: bbox\[3\] is dict, expected a list'),
    ('selective_search', lambda d: d['bbox'][0].__setitem__(0, [1, 2, 3, 4, 5]),
     r'bbox\[0\]\[0\] has 5 numbers, expected 4'),
]


@pytest.mark.parametrize('kind,mutate,message', MALFORMED)
def test_malformed_files_name_file_and_field(tmp_path, kind, mutate, message):
    data = copy.deepcopy(official(kind))
    mutate(data)
    src = dump(data, tmp_path / f'{kind}.json')
    with pytest.raises(OfficialFormatError, match=message):
        MiningStore.open(src)


def test_not_json_and_wrong_kind(tmp_path):
    p = tmp_path / 'broken.json'
    p.write_text('{"bbox": [[[1, 2, 3, 4]]')
    with pytest.raises(OfficialFormatError, match=r'broken\.json: not valid JSON'):
        MiningStore.open(p)
    p = dump({'something': 1}, tmp_path / 'odd.json')
    with pytest.raises(OfficialFormatError, match=r'odd\.json: neither "pseudo_annotations"'):
        MiningStore.open(p)
    p = dump(official('knn'), tmp_path / 'knn.json')
    with pytest.raises(
            OfficialFormatError, match=r'knn\.json: holds knn data, expected '
            'correspondence'):
        MiningStore.open(p, kind='correspondence')


def test_integral_floats_and_streamed_output_shape(tmp_path):
    data = official('correspondence')
    fl = copy.deepcopy(data)
    fl['pseudo_annotations']['bbox'][0] = [[float(v) for v in b] for b in fl['pseudo_annotations']['bbox'][0]]
    store = MiningStore.open(dump(fl, tmp_path / 'f.json'))
    out = write_official_json(store, tmp_path / 'o.json', include_meta=False)
    assert json.load(open(out)) == data  # 12.0 comes back as 12
    assert list(json.load(open(out))) == ['info', 'images', 'pseudo_annotations']
    assert list(json.load(open(out))['pseudo_annotations']) == ['image_id', 'bbox', 'knn_image_id', 'knn_bbox_pair']
