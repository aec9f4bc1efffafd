"""Stage 2a: exact KNN (query excluded by index, ties, order), category precision, the step."""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT
from mmengine.config import Config
from mmengine.runner import Runner

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.evaluation.knn_metric import KNNMetric, exact_knn
from orl_plugin.store import MiningStore

PY = sys.executable
KNN_CONFIG = osp.join(ROOT, 'configs/orl/stage2/knn_byol-resnet18_1xb64_synthetic.py')


def _reference_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Brute force: every other row sorted by (score desc, index asc)."""
    s = x.astype(np.float64) @ x.astype(np.float64).T
    out = []
    for q in range(len(x)):
        idx = np.array([j for j in range(len(x)) if j != q])
        out.append(idx[np.lexsort((idx, -s[q, idx]))][:k])
    return np.array(out)


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_exact_knn_order_matches_brute_force():
    x = _unit(np.random.default_rng(0).standard_normal((60, 16)))
    got = exact_knn(x, 7)
    assert got.shape == (60, 7)
    np.testing.assert_array_equal(got, _reference_knn(x, 7))
    assert not (got == np.arange(60)[:, None]).any()


def test_exact_knn_excludes_query_by_index_with_duplicates():
    x = _unit(np.random.default_rng(1).standard_normal((20, 8)))
    x[3] = x[0]
    x[5] = x[0]  # three identical images: 0, 3, 5
    got = exact_knn(x, 4)
    # Each duplicate finds the other two first (lower index first), never itself.
    assert got[0][:2].tolist() == [3, 5]
    assert got[3][:2].tolist() == [0, 5]
    assert got[5][:2].tolist() == [0, 3]
    assert not (got == np.arange(20)[:, None]).any()


def test_exact_knn_ties_beyond_the_first_search():
    # 40 identical rows: every score ties, far past k + 1 + margin; lower indices win.
    x = np.tile(_unit([[1.0, 2.0, 3.0]]), (40, 1))
    got = exact_knn(x, 10, margin=1)
    for q in (0, 5, 39):
        assert got[q].tolist() == [j for j in range(40) if j != q][:10]


def test_exact_knn_needs_k_plus_one_rows():
    with pytest.raises(ValueError, match='at least 4'):
        exact_knn(_unit(np.eye(3)), 3)


def test_knn_metric_category_precision_known_case(tmp_path):
    # Points on the unit circle: nearest neighbours follow the angular distance.
    angles = {0: 0, 1: 10, 2: 25, 3: 90, 4: 100, 5: 55, 6: 200}
    labels = {0: [0], 1: [0], 2: [0], 3: [1], 4: [1], 5: [2], 6: []}
    samples = []
    for i, a in angles.items():
        r = np.deg2rad(a)
        samples.append(
            dict(
                index=i,
                file_name=f'{i}.jpg',
                img_id=100 + i,
                gt_labels=np.array(labels[i], np.int64),
                embedding=np.array([np.cos(r), np.sin(r)], np.float32)))
    samples.append(
        dict(
            index=7,
            file_name='7.jpg',
            img_id=107,
            skipped=True,
            skip_reason='7.jpg: cannot decode',
            gt_labels=np.array([0])))
    metric = KNNMetric(out_file=str(tmp_path / 'knn.orlstore'), json_file=str(tmp_path / 'knn.json'), k=2)
    metric.process(None, samples[::-1])  # arrival order must not matter
    res = metric.compute_metrics(metric.results)
    store = MiningStore.open(str(tmp_path / 'knn.orlstore'))
    expected = [[1, 2], [0, 2], [1, 0], [4, 5], [3, 5], [2, 3], [4, 3], [7, 7]]
    assert store.kind == 'knn' and np.asarray(store.array('knn')).tolist() == expected
    # hits: 2 + 2 + 2 + 1 + 1 + 0 over 6 annotated readable queries x 2
    assert res['category_precision@2'] == pytest.approx(8 / 12)
    assert res['category_precision@1'] == pytest.approx(5 / 6)
    # a random readable neighbour: label-0 queries share with 2 of the 6 others, label-1 ones with 1, image 5 with none
    assert res['category_precision_random'] == pytest.approx((3 * 2 / 6 + 2 * 1 / 6) / 6)
    assert res['num_skipped'] == 1
    assert store.skipped == [dict(index=7, file_name='7.jpg', reason='7.jpg: cannot decode')]
    assert store.image_ids.tolist() == list(range(100, 108))
    official = MiningStore.open(str(tmp_path / 'knn.json'))
    assert np.asarray(official.array('knn')).tolist() == expected
    assert official.params['knn_image_num'] == 2


# --------------------------------------------------------------------------------------------
# the whole step through tools/test.py: 1 rank vs 2 ranks (gloo on CPU)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def knn_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('knn')
    data = str(root / 'scenes')
    make_synthetic_scenes(data, num_images=15, seed=5, img_size=(96, 96))  # 12 train images
    # Duplicate images: 1 and 2 are byte copies of 0.
    with open(osp.join(data, 'images', '000000.jpg'), 'rb') as f:
        img0 = f.read()
    for name in ('000001.jpg', '000002.jpg'):
        with open(osp.join(data, 'images', name), 'wb') as f:
            f.write(img0)
    cfg = Config.fromfile(KNN_CONFIG)
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = str(root / 'byol_tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return root, data, ckpt


def _knn_overrides(data, out, k=3):
    return {
        'test_dataloader.dataset.data_root': data, 'test_evaluator.out_file': out, 'test_evaluator.k': k,
        'test_dataloader.batch_size': 2, 'test_dataloader.num_workers': 0, 'test_cfg.chunk_size': 4,
        'env_cfg.dist_cfg.backend': 'gloo', 'log_level': 'WARNING'
    }


def test_knn_metric_names_non_finite_embeddings(tmp_path):
    """A diverged stage 1 gives NaN features; faiss then returns no neighbours. One clear error instead."""
    samples = [
        dict(
            index=i,
            file_name=f'{i}.jpg',
            img_id=i,
            gt_labels=np.array([0]),
            embedding=np.array([np.nan if i >= 2 else 1.0, 0.0], np.float32)) for i in range(5)
    ]
    metric = KNNMetric(out_file=str(tmp_path / 'knn.orlstore'), k=2)
    metric.process(None, samples)
    with pytest.raises(ValueError, match=r"3 of 5 image embeddings are not finite.*'2\.jpg'"):
        metric.compute_metrics(metric.results)


def test_knn_step_one_vs_two_ranks(knn_setup):
    root, data, ckpt = knn_setup
    out1, out2 = str(root / 'knn1.orlstore'), str(root / 'knn2.orlstore')
    # 1 rank in this process; 2 ranks through tools/dist_test.sh (torchrun, gloo on CPU)
    cfg = Config.fromfile(KNN_CONFIG)
    cfg.merge_from_dict(_knn_overrides(data, out1))
    cfg.work_dir, cfg.load_from, cfg.experiment_name = str(root / 'w1'), ckpt, 'knn_1rank'
    metrics = Runner.from_cfg(cfg).test()
    assert metrics['knn/num_images'] == 12 and 0.0 <= metrics['knn/category_precision@3'] <= 1
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=PY, PORT=str(29500 + os.getpid() % 1000))
    options = [f'{k}={v}' for k, v in _knn_overrides(data, out2).items()]
    run = subprocess.run(
        ['bash', 'tools/dist_test.sh', KNN_CONFIG, ckpt, '2', '--work-dir',
         str(root / 'w2'), '--cfg-options'] + options,
        cwd=ROOT,
        env=env,
        timeout=300,
        capture_output=True,
        text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    s1 = MiningStore.open(out1)
    knn = np.asarray(s1.array('knn'))
    assert knn.shape == (12, 3)
    assert not (knn == np.arange(12)[:, None]).any()
    assert all(len(set(r)) == 3 for r in knn.tolist())
    # The duplicates find each other first, never themselves.
    for q, others in ((0, {1, 2}), (1, {0, 2}), (2, {0, 1})):
        assert set(knn[q, :2].tolist()) == others
    for name in ('knn.npy', 'image_ids.npy', 'file_names.npy'):
        with open(osp.join(out1, name), 'rb') as f1, open(osp.join(out2, name), 'rb') as f2:
            assert f1.read() == f2.read(), name
    # Same data, checkpoint and parameters: the same cache key on both runs.
    assert os.listdir(root / 'w1' / 'mining_cache' / 'knn') == \
        os.listdir(root / 'w2' / 'mining_cache' / 'knn')
