"""Native mining store: round trips, compact dtypes, atomic replace, validation on open."""
import json
import multiprocessing
import os
import pickle

import numpy as np
import pytest
from helpers import ROOT

from orl_plugin.store import MiningStore, StoreFormatError
from orl_plugin.store import format as store_format
from orl_plugin.store import write_correspondence_store, write_knn_store, write_selective_search_store
from orl_plugin.utils import atomic as store_atomic


def make_corr(n=6, k=3, seed=0, hi=600):
    rng = np.random.default_rng(seed)
    boxes = [rng.integers(0, hi, (int(rng.integers(0, 7)), 4)) for _ in range(n)]
    boxes[0] = np.zeros((0, 4), np.int64)  # an image with no kept box must survive
    knn = np.stack([(i + 1 + np.arange(k)) % n for i in range(n)])
    pairs = [[rng.integers(0, hi, (int(rng.integers(0, 4)), 8)) for _ in range(k)] for _ in range(n)]
    names = [f'img_{i:03d}.jpg' for i in range(n)]
    names[1] = 'caf\u00e9/\u00fcber.jpg'  # non-ASCII names are UTF-8 in the bytes array
    ids = [1000 + 3 * i for i in range(n)]
    return boxes, knn, pairs, names, ids


PARAMS = dict(
    bbox_min_size=96,
    bbox_max_aspect_ratio=3,
    bbox_max_iou=0.5,
    intra_bbox_num=100,
    knn_image_num=3,
    knn_bbox_pair_ratio=0.1)


def assert_same_corr(store, boxes, knn, pairs, names, ids):
    assert store.kind == 'correspondence'
    assert store.num_images == len(boxes) == len(store)
    assert store.num_neighbours == knn.shape[1]
    assert store.image_ids.dtype == np.int64 and store.image_ids.tolist() == list(ids)
    for i in range(len(boxes)):
        assert store.file_name(i) == names[i]
        np.testing.assert_array_equal(store.boxes(i), np.asarray(boxes[i]).reshape(-1, 4))
        assert store.num_boxes(i) == len(boxes[i])
        np.testing.assert_array_equal(store.knn(i), knn[i])
        per_img = store.image_pairs(i)
        for j in range(knn.shape[1]):
            np.testing.assert_array_equal(store.pairs(i, j), np.asarray(pairs[i][j]).reshape(-1, 8))
            np.testing.assert_array_equal(per_img[j], store.pairs(i, j))
            assert store.num_pairs(i, j) == len(pairs[i][j])


def test_correspondence_round_trip(tmp_path):
    boxes, knn, pairs, names, ids = make_corr()
    skipped = [dict(index=4, file_name=names[4], reason='unreadable')]
    path = write_correspondence_store(
        tmp_path / 'c.orlstore',
        boxes,
        knn,
        pairs,
        file_names=names,
        image_ids=ids,
        params=PARAMS,
        provenance=dict(config='cfg.py', checkpoint='ckpt.pth'),
        skipped=skipped)
    store = MiningStore.open(path)
    assert_same_corr(store, boxes, knn, pairs, names, ids)
    assert store.params == PARAMS
    assert store.skipped == skipped
    prov = store.provenance
    assert prov['config'] == 'cfg.py' and prov['checkpoint'] == 'ckpt.pth'
    assert {'tool', 'created', 'orl_plugin_version'} <= set(prov)
    hdr = json.loads((tmp_path / 'c.orlstore' / 'header.json').read_text())
    assert hdr['format'] == 'orl-mining-store' and hdr['version'] == 1
    assert hdr['kind'] == 'correspondence' and hdr['num_images'] == 6
    # everything is memory-mapped, nothing copied at open
    for name in ('image_ids', 'file_names', 'boxes', 'box_offsets', 'knn', 'pairs', 'pair_offsets'):
        assert isinstance(store.array(name), np.memmap), name
    assert store.array('file_names').dtype.kind == 'S'
    assert store.knn(0).dtype == np.int64 and store.boxes(2).dtype == np.int32
    assert store.index_of(names[1]) == 1
    with pytest.raises(IndexError):
        store.boxes(6)
    with pytest.raises(IndexError):
        store.pairs(0, 3)


def test_selective_search_and_knn_round_trip(tmp_path):
    boxes, knn, _, names, ids = make_corr(seed=1)
    p = write_selective_search_store(
        tmp_path / 's.orlstore', boxes, file_names=names, image_ids=ids, params=dict(mode='fast'))
    ss = MiningStore.open(p, kind='selective_search')
    assert ss.params == dict(mode='fast') and ss.has_image_list
    for i in range(len(boxes)):
        np.testing.assert_array_equal(ss.boxes(i), boxes[i].reshape(-1, 4))
    with pytest.raises(AttributeError, match='no neighbours'):
        ss.knn(0)
    p = write_knn_store(tmp_path / 'k.orlstore', knn, file_names=names, image_ids=ids)
    kn = MiningStore.open(p)
    assert kn.kind == 'knn' and kn.params == dict(knn_image_num=3)
    np.testing.assert_array_equal(np.stack([kn.knn(i) for i in range(6)]), knn)
    with pytest.raises(StoreFormatError, match="holds a 'knn' store, expected 'correspondence'"):
        MiningStore.open(p, kind='correspondence')
    # without an image list: ids -1, empty names, flagged
    p = write_selective_search_store(tmp_path / 'n.orlstore', boxes)
    nl = MiningStore.open(p)
    assert not nl.has_image_list and nl.image_ids.tolist() == [-1] * 6 and nl.file_name(3) == ''


def test_int16_int32_selection(tmp_path):
    boxes, knn, pairs, names, ids = make_corr()
    s = MiningStore.open(write_correspondence_store(tmp_path / 'a.orlstore', boxes, knn, pairs))
    assert s.box_dtype == np.int16 and s.pair_dtype == np.int16
    boxes[2] = np.array([[0, 0, 40000, 10]])  # beyond int16: boxes go int32, pairs stay int16
    s = MiningStore.open(write_correspondence_store(tmp_path / 'b.orlstore', boxes, knn, pairs))
    assert s.box_dtype == np.int32 and s.pair_dtype == np.int16
    np.testing.assert_array_equal(s.boxes(2), [[0, 0, 40000, 10]])
    pairs[3][1] = np.array([[-40000, 0, 1, 1, 0, 0, 1, 1]])
    s = MiningStore.open(write_correspondence_store(tmp_path / 'c.orlstore', boxes, knn, pairs))
    assert s.pair_dtype == np.int32
    np.testing.assert_array_equal(s.pairs(3, 1), [[-40000, 0, 1, 1, 0, 0, 1, 1]])
    boxes[2] = np.array([[0, 0, 2**31, 10]])
    with pytest.raises(StoreFormatError, match='do not fit in int32'):
        write_correspondence_store(tmp_path / 'd.orlstore', boxes, knn, pairs)
    assert not (tmp_path / 'd.orlstore').exists()


def test_failed_write_leaves_old_store_intact(tmp_path, monkeypatch):
    boxes, knn, pairs, names, ids = make_corr()
    path = write_correspondence_store(tmp_path / 'c.orlstore', boxes, knn, pairs, file_names=names, image_ids=ids)
    before = {f: (tmp_path / 'c.orlstore' / f).read_bytes() for f in os.listdir(tmp_path / 'c.orlstore')}
    real_save = store_format._save_npy

    def failing_save(p, arr):
        if p.endswith('pairs.npy'):
            raise OSError('disk full (simulated)')
        real_save(p, arr)

    monkeypatch.setattr(store_format, '_save_npy', failing_save)
    boxes2, knn2, pairs2, _, _ = make_corr(seed=5)
    with pytest.raises(OSError, match='simulated'):
        write_correspondence_store(path, boxes2, knn2, pairs2, file_names=names, image_ids=ids)
    after = {f: (tmp_path / 'c.orlstore' / f).read_bytes() for f in os.listdir(tmp_path / 'c.orlstore')}
    assert after == before
    assert os.listdir(tmp_path) == ['c.orlstore']  # no temp directory left behind
    assert_same_corr(MiningStore.open(path), boxes, knn, pairs, names, ids)


@pytest.mark.parametrize('exchange', [True, False])
def test_replace_keeps_open_readers_working(tmp_path, monkeypatch, exchange):
    if not exchange:  # the fallback path (no renameat2): rename aside, rename in, remove old
        monkeypatch.setattr(store_atomic, '_rename_exchange', lambda a, b: False)
    boxes, knn, pairs, names, ids = make_corr()
    path = write_correspondence_store(tmp_path / 'c.orlstore', boxes, knn, pairs, file_names=names, image_ids=ids)
    old = MiningStore.open(path)
    boxes2, knn2, pairs2, _, _ = make_corr(seed=7)
    write_correspondence_store(path, boxes2, knn2, pairs2, file_names=names, image_ids=ids)
    assert os.listdir(tmp_path) == ['c.orlstore']
    assert_same_corr(old, boxes, knn, pairs, names, ids)  # old mmaps still valid
    assert_same_corr(MiningStore.open(path), boxes2, knn2, pairs2, names, ids)
    with pytest.raises(StoreFormatError, match='replaced after this process opened it'):
        pickle.loads(pickle.dumps(old))


def test_refuses_to_replace_non_store(tmp_path):
    target = tmp_path / 'precious'
    target.mkdir()
    (target / 'notes.txt').write_text('keep me')
    boxes, knn, pairs, _, _ = make_corr()
    with pytest.raises(FileExistsError, match='not an orl_plugin store'):
        write_selective_search_store(target, boxes)
    assert (target / 'notes.txt').read_text() == 'keep me'
    assert sorted(os.listdir(tmp_path)) == ['precious']


def _child_read(path, q):
    s = pickle.loads(path)
    q.put((s.boxes(3).tolist(), s.pairs(2, 1).tolist(), s.file_name(1)))


def test_pickle_reopens_by_path_and_fork_shares(tmp_path):
    boxes, knn, pairs, names, ids = make_corr()
    store = MiningStore.open(
        write_correspondence_store(tmp_path / 'c.orlstore', boxes, knn, pairs, file_names=names, image_ids=ids))
    blob = pickle.dumps(store)
    assert len(blob) < 1000  # the path, not the arrays
    assert_same_corr(pickle.loads(blob), boxes, knn, pairs, names, ids)
    ctx = multiprocessing.get_context('fork')
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(blob, q))
    p.start()
    got = q.get(timeout=30)
    p.join(30)
    assert got == (boxes[3].tolist(), pairs[2][1].tolist(), names[1])


def _corrupt(path, name, arr):
    np.save(os.path.join(path, name + '.npy'), arr)


def test_validation_on_open_names_file_and_field(tmp_path):
    boxes, knn, pairs, names, ids = make_corr()

    def fresh(tag):
        return write_correspondence_store(
            tmp_path / f'{tag}.orlstore', boxes, knn, pairs, file_names=names, image_ids=ids)

    p = fresh('version')
    hdr = json.loads(open(os.path.join(p, 'header.json')).read())
    hdr['version'] = 99
    open(os.path.join(p, 'header.json'), 'w').write(json.dumps(hdr))
    with pytest.raises(StoreFormatError, match=r'header\.json: field "version" is 99.*newer'):
        MiningStore.open(p)

    p = fresh('offsets')
    off = np.load(os.path.join(p, 'box_offsets.npy'))
    off[-1] += 1
    _corrupt(p, 'box_offsets', off)
    with pytest.raises(StoreFormatError, match=r'box_offsets\.npy: runs from 0 to'):
        MiningStore.open(p)

    p = fresh('mono')
    off = np.load(os.path.join(p, 'pair_offsets.npy'))
    off[5], off[6] = off[6] + 1, off[5]
    _corrupt(p, 'pair_offsets', off)
    with pytest.raises(StoreFormatError, match=r'pair_offsets\.npy: decreases at entry'):
        MiningStore.open(p)

    p = fresh('knn')
    kn = np.load(os.path.join(p, 'knn.npy'))
    kn[2, 1] = 6
    _corrupt(p, 'knn', kn)
    with pytest.raises(StoreFormatError, match=r'knn\.npy: row 2 has neighbour positions'):
        MiningStore.open(p)

    p = fresh('shape')
    _corrupt(p, 'image_ids', np.arange(5, dtype=np.int64))
    with pytest.raises(StoreFormatError, match=r'image_ids\.npy: shape \(5,\)'):
        MiningStore.open(p)

    p = fresh('missing')
    os.remove(os.path.join(p, 'pairs.npy'))
    with pytest.raises(StoreFormatError, match=r'pairs\.npy: missing'):
        MiningStore.open(p)

    os.remove(os.path.join(p, 'header.json'))
    with pytest.raises(StoreFormatError, match=r'header\.json: missing'):
        MiningStore.open(p)
    with pytest.raises(FileNotFoundError):
        MiningStore.open(tmp_path / 'nothing.orlstore')


def test_writer_input_errors(tmp_path):
    boxes, knn, pairs, names, ids = make_corr()
    bad_pairs = [list(r) for r in pairs]
    bad_pairs[4] = bad_pairs[4][:2]
    with pytest.raises(StoreFormatError, match=r'pairs\[4\] has 2 neighbours, expected 3'):
        write_correspondence_store(tmp_path / 'a.orlstore', boxes, knn, bad_pairs)
    bad_pairs = [list(r) for r in pairs]
    bad_pairs[2][1] = np.zeros((2, 7), int)
    with pytest.raises(StoreFormatError, match=r'pairs\[2\]\[1\] has shape \(2, 7\)'):
        write_correspondence_store(tmp_path / 'a.orlstore', boxes, knn, bad_pairs)
    bad_boxes = list(boxes)
    bad_boxes[3] = np.array([[1.5, 2, 3, 4]])
    with pytest.raises(StoreFormatError, match=r'boxes\[3\] has non-integer values'):
        write_selective_search_store(tmp_path / 'a.orlstore', bad_boxes)
    with pytest.raises(StoreFormatError, match='file_names has 5 entries, expected 6'):
        write_selective_search_store(tmp_path / 'a.orlstore', boxes, file_names=names[:5])
    with pytest.raises(StoreFormatError, match=r'knn\.*: row 0 .* outside \[0, 6\)'):
        write_knn_store(tmp_path / 'a.orlstore', knn + 5)
    assert not (tmp_path / 'a.orlstore').exists()
    # integral floats are fine (some tools emit 12.0)
    fl = [b.astype(np.float64) for b in boxes]
    s = MiningStore.open(write_selective_search_store(tmp_path / 'f.orlstore', fl))
    np.testing.assert_array_equal(s.boxes(3), boxes[3])


def test_atomic_open_replaces_whole_or_not_at_all(tmp_path):
    from orl_plugin.store import atomic_open, atomic_write_json
    target = tmp_path / 'sub' / 'out.bin'
    with atomic_open(target, 'wb') as f:
        f.write(b'first')
    with pytest.raises(RuntimeError, match='simulated'):
        with atomic_open(target, 'wb', tmp_prefix='.tmp_rank0_') as f:
            f.write(b'half of the second')
            raise RuntimeError('simulated crash while writing')
    assert target.read_bytes() == b'first'
    assert os.listdir(tmp_path / 'sub') == ['out.bin']  # no temporary file left
    path = atomic_write_json(tmp_path / 'x.json', dict(a=np.float32(0.5)))
    assert path == str(tmp_path / 'x.json') and json.load(open(path)) == dict(a='0.5')
    with pytest.raises(ValueError, match="must start with 'w'"):
        with atomic_open(target, 'ab'):
            pass


def test_store_handle_opens_once_per_process_and_pickles_as_path(tmp_path):
    from orl_plugin.store import StoreHandle
    boxes, knn, pairs, names, ids = make_corr()
    path = write_correspondence_store(tmp_path / 'c.orlstore', boxes, knn, pairs, file_names=names, image_ids=ids)
    handle = StoreHandle(path, kind='correspondence')
    store = handle.get()
    assert handle.get() is store  # once per process
    blob = pickle.dumps(handle)
    assert len(blob) < 1000  # the path, not the arrays
    again = pickle.loads(blob)
    assert again.get() is not store
    assert_same_corr(again.get(), boxes, knn, pairs, names, ids)
    with pytest.raises(
            StoreFormatError, match=f"{path}: holds a 'correspondence' store, "
            "expected 'knn'"):
        StoreHandle(path, kind='knn').get()


def test_image_list_check_names_both_sides(tmp_path):
    from orl_plugin.store import check_image_list
    boxes, knn, pairs, names, ids = make_corr()
    store = MiningStore.open(write_knn_store(tmp_path / 'k.orlstore', knn, file_names=names, image_ids=ids))
    infos = [dict(img_path=f'/data/{n}', file_name=n, img_id=i) for n, i in zip(names, ids)]
    kw = dict(store_desc=f'KNN file {store.path}', list_desc='image list ann.json')
    check_image_list(store, infos, **kw)
    with pytest.raises(
            ValueError,
            match=r'k\.orlstore and image list ann\.json do not match: '
            r'the store has 6 images, the image list 5; mine stage 2'):
        check_image_list(store, infos[:5], **kw)
    swapped = [infos[1], infos[0]] + infos[2:]
    with pytest.raises(
            ValueError, match=r"at position 0: the store has file_name 'img_000\.jpg', "
            r"the image list 'caf"):
        check_image_list(store, swapped, **kw)
    other_ids = [dict(info, img_id=7) for info in infos]
    with pytest.raises(
            ValueError, match=r'at position 0 \(img_000\.jpg\): the store has image id '
            r'1000, the image list 7'):
        check_image_list(store, other_ids, **kw)
    # without an image list only the count is known
    nl = MiningStore.open(write_selective_search_store(tmp_path / 'n.orlstore', boxes))
    check_image_list(nl, swapped, **kw)


def test_errors_name_the_full_path(tmp_path, monkeypatch):
    boxes, knn, _, _, _ = make_corr()
    write_knn_store(tmp_path / 'k.orlstore', knn)
    (tmp_path / 'bad.json').write_text('{"bbox": 3}')
    monkeypatch.chdir(tmp_path)  # relative paths in, absolute paths out
    with pytest.raises(StoreFormatError, match=f"^{tmp_path}/k.orlstore: holds a 'knn' store"):
        MiningStore.open('k.orlstore', kind='selective_search')
    with pytest.raises(StoreFormatError, match=rf'^{tmp_path}/bad\.json: field "bbox" is int'):
        MiningStore.open('bad.json')


def _imports(path):
    """The orl_plugin modules a source file imports (relative imports resolved)."""
    import ast
    rel = os.path.relpath(path, ROOT).replace(os.sep, '/')
    package = rel[:-3].split('/')[:-1] if not rel.endswith('__init__.py') else rel.split('/')[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = '.'.join(base + ([node.module] if node.module else []))
            found.add(mod)
            found.update(f'{mod}.{a.name}' for a in node.names)
    return {m for m in found if m.startswith('orl_plugin')}


def test_store_package_has_no_upward_imports_and_no_circle():
    import glob
    folder = os.path.join(ROOT, 'orl_plugin', 'store')
    graph = {}
    for path in glob.glob(os.path.join(folder, '*.py')):
        name = os.path.basename(path)[:-3]
        deps = _imports(path)
        outside = {m for m in deps if not m.startswith(('orl_plugin.store', 'orl_plugin.utils'))}
        assert not outside, f'{name} imports {outside}: the store sits below every other layer but utils'
        graph[name] = {m.split('.')[2] for m in deps if m.startswith('orl_plugin.store.')} - {name}
    graph.pop('__init__')
    done, visiting = set(), []

    def visit(n):
        assert n not in visiting, f'import circle: {" -> ".join(visiting + [n])}'
        if n in done or n not in graph:
            return
        visiting.append(n)
        for m in graph[n]:
            visit(m)
        visiting.pop()
        done.add(n)

    for n in graph:
        visit(n)
    # the stage-2 model side never climbs into the engine or the data sets
    for sub, banned in (('models', ('orl_plugin.engine', 'orl_plugin.datasets')), ('evaluation',
                                                                                   ('orl_plugin.engine', ))):
        for path in glob.glob(os.path.join(ROOT, 'orl_plugin', sub, '*.py')):
            bad = {m for m in _imports(path) if m.startswith(banned)}
            assert not bad, f'{path} imports {bad}'
