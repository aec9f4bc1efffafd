"""The stage-3 arms (``projects.orl_evidence.stage3_arms``): the random-pairs control, compute matching, the
paired statistics, and one quick run (instrument pairs mined, three arms trained and probed, resumed, collected)."""
import json
import math
import os
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from orl_plugin.store import MiningStore, write_correspondence_store
from projects.orl_evidence import stage3_arms as arms
from projects.orl_evidence.pair_controls import random_pairs_store
from projects.orl_evidence.probes import WEIGHT_DECAYS, crop_paired_difference, effective_rank, linear_probe

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TOOLS = osp.join(ROOT, 'projects', 'orl_evidence', 'tools')
# gpu_evidence.sh --cpu-tiny runs the arms with these arguments (and so resumes this run)
QUICK_ARGS = [
    '--quick', '--device', 'cpu', '--arms', 'image', 'inter-random', 'inter-instrument', '--seeds', '0', '--ft-iters',
    '0'
]


def test_random_pairs_keep_boxes_neighbours_and_counts(tmp_path):
    rng = np.random.default_rng(0)
    boxes = [rng.integers(0, 50, (n, 4)) for n in (3, 5, 4)]
    knn = np.array([[1, 2], [2, 0], [0, 1]])
    pairs = [[np.concatenate([b[:k], boxes[j][:k]], 1) for j, k in zip(knn[i], (1, 2))] for i, b in enumerate(boxes)]
    src = write_correspondence_store(str(tmp_path / 'mined.orlstore'), boxes, knn, pairs)
    out = MiningStore.open(random_pairs_store(src, str(tmp_path / 'random.orlstore'), seed=3))
    mined = MiningStore.open(src)
    drawn = set()
    for i in range(3):
        assert np.array_equal(out.boxes(i), mined.boxes(i)) and np.array_equal(out.knn(i), mined.knn(i))
        for j, nb in enumerate(mined.knn(i)):
            got = np.asarray(out.pairs(i, j))
            assert len(got) == mined.num_pairs(i, j)
            q_rows, n_rows = {tuple(r) for r in boxes[i]}, {tuple(r) for r in boxes[nb]}
            assert all(tuple(p[:4]) in q_rows and tuple(p[4:]) in n_rows for p in got)
            drawn |= {tuple(p) for p in got}
    assert drawn - {tuple(p) for row in pairs for cell in row for p in cell}  # not the mined pairs again
    assert out.provenance['control'].startswith('random pairs')


def test_matched_epochs_give_every_arm_the_same_pixel_forwards():
    args = SimpleNamespace(epochs=16, view_size=96, patch_size=48)
    full = arms.sample_cost((1, 1, 1), 96, 48)
    assert full == 4 * (96 * 96 + 2 * 48 * 48)
    for arm, (weights, _) in arms.ARMS.items():
        cost = arms.matched_epochs(arm, args) * arms.sample_cost(weights, 96, 48)
        assert abs(cost - 16 * full) <= 0.5 * arms.sample_cost(weights, 96, 48), arm  # within half an epoch
    assert arms.matched_epochs('image', args) == 24 and arms.matched_epochs('inter-random', args) == 16


def test_paired_difference_and_targets():

    def rec(v):
        return dict(probe=dict(object_linear_bn_recalibrated=v))

    results = dict(
        random_init={s: rec(0.60) for s in '012'},
        arms=dict(
            image={'0': rec(0.70), '1': rec(0.72), '2': rec(0.71)},
            intra={s: rec(0.70) for s in '012'},
            **{'inter-random': {s: rec(0.69) for s in '012'}},
            **{'inter-instrument': {'0': rec(0.74), '1': rec(0.75), '2': rec(0.76)}}))
    d = arms.paired_difference(results, 'inter-instrument', 'image', 'object_linear_bn_recalibrated')
    diffs = [0.04, 0.03, 0.05]
    assert d['mean'] == pytest.approx(0.04) and d['n'] == 3
    assert d['se'] == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(3))
    targets = arms.evaluate_targets(results, 'object_linear_bn_recalibrated')
    by_name = {t['name'].split(':')[0]: t for t in targets if not t['name'].startswith('control')}
    assert by_name['regime']['passed'] is True  # +0.11 over the random init, seeds within 0.01
    assert by_name['ceiling']['passed'] is True and by_name['the chain']['passed'] is None  # no MoCo v2 arm
    (control, ) = [t for t in targets if t['name'].startswith('control: inter-RoI on instrument')]
    assert control['passed'] is True and "gain over + intra: -0.0100 ± 0.0000 SE (n = 3)" in control['measured']


def test_one_seed_gives_the_crop_level_error_and_no_verdict():
    # 8 query crops: the image arm right on 4, the instrument arm on the same 4 and 2 more
    image, inter = '11110000', '11111100'
    d = crop_paired_difference(inter, image)
    assert d['mean'] == pytest.approx(0.25) and d['se'] == pytest.approx(
        np.std([0] * 6 + [1] * 2, ddof=1) / math.sqrt(8))
    with pytest.raises(ValueError, match='different query sets'):
        crop_paired_difference(inter, image[:4])

    def rec(v, correct):
        return dict(probe=dict(object_linear_bn_recalibrated=v, object_linear_correct_bn_recalibrated=correct))

    results = dict(
        random_init={'0': rec(0.25, '10100000')},
        arms=dict(image={'0': rec(0.5, image)}, **{'inter-instrument': {'0': rec(0.75, inter)}}))
    pd = arms.paired_difference(results, 'inter-instrument', 'image', 'object_linear_bn_recalibrated')
    assert pd['n'] == 1 and pd['crop_se'] == pytest.approx(d['se'])
    (ceiling, ) = [
        t for t in arms.evaluate_targets(results, 'object_linear_bn_recalibrated') if t['name'].startswith('ceiling')
    ]
    assert ceiling['passed'] is None and f"+0.2500 ± {d['se']:.4f} SE over the probe's crops, one seed" in ceiling[
        'measured']


def test_linear_probe_and_rank_on_separable_and_collapsed_features():
    rng = np.random.default_rng(0)
    import torch
    labels = np.repeat(np.arange(4), 50)
    centres = rng.normal(size=(4, 16)) * 3
    feats = torch.tensor(centres[labels] + rng.normal(size=(200, 16)), dtype=torch.float32)
    res = linear_probe(feats[::2], labels[::2], feats[1::2], labels[1::2])
    assert res["top1"] > 0.95 and res["weight_decay"] in WEIGHT_DECAYS
    noise = torch.tensor(rng.normal(size=(200, 16)), dtype=torch.float32)
    assert linear_probe(noise[::2], labels[::2], noise[1::2], labels[1::2])['top1'] < 0.5
    assert effective_rank(noise) > 10 and effective_rank(noise[:, :1] * torch.ones(1, 16)) < 1.5


def _run(args, env_extra=None, cmd=None):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(env_extra or {})
    return subprocess.run(
        cmd or [sys.executable, osp.join(TOOLS, 'stage3_arms.py'), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('stage3_arms'))
    proc = _run(['--out', out, *QUICK_ARGS])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(out, 'results.json')) as f:
        return out, json.load(f), proc.stdout


@pytest.mark.timeout(900)
def test_quick_run_writes_every_arm_and_resumes(quick_run):
    out, res, stdout = quick_run
    assert res['failures'] == []
    assert set(res['arms']) == {'image', 'inter-random', 'inter-instrument'}
    for arm, seeds in res['arms'].items():
        assert set(seeds) == {'0'}  # --quick keeps the first seed
        for rec in seeds.values():
            assert osp.isfile(rec['checkpoint'])
            for key in arms.FIGURES:
                assert isinstance(rec['probe'][key], float), (arm, key)
    assert res['setup']['matched_epochs']['image'] >= res['setup']['matched_epochs']['inter-random']
    corr = res['mining']['instrument']['metrics']
    assert 0 <= corr['pair_object_rate'] <= 1 and 'pair_object_rate_random' in corr
    assert osp.isdir(osp.join(out, 'mining', 'random', 'correspondence.orlstore'))
    names = [t['name'] for t in res['targets']['object_linear_bn_recalibrated']]
    assert names[0].startswith('regime') and any(n.startswith('ceiling') for n in names)
    md = open(osp.join(out, 'results.md')).read()
    assert '| image level only' in md and 'Targets (linear probe' in md
    # a second run reuses every step; --collect only reads
    again = _run(['--out', out, *QUICK_ARGS])
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'started' in again.stdout and 'FAILED' not in again.stdout
    with open(osp.join(out, 'results.json')) as f:
        res2 = json.load(f)
    assert all(r['resumed'] for recs in res2['step_seconds'].values() for r in recs)
    collected = _run(['--out', out, *QUICK_ARGS, '--collect'])
    assert collected.returncode == 0 and '| image level only' in collected.stdout


@pytest.mark.timeout(900)
def test_gpu_evidence_cpu_tiny_runs_the_arms(quick_run, tmp_path):
    out, _, _ = quick_run
    evidence = str(tmp_path / 'evidence')
    os.makedirs(evidence)
    os.symlink(out, osp.join(evidence, 'stage3_arms'))  # the script's stage-3 part resumes the quick run
    proc = _run([],
                env_extra=dict(OUT=evidence, PYTHON=sys.executable, MECHANISM='0'),
                cmd=['bash', osp.join(TOOLS, 'gpu_evidence.sh'), '--cpu-tiny'])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'stage3_arms.py' in proc.stdout and 'finished in' in proc.stdout
    with open(osp.join(out, 'results.json')) as f:
        res = json.load(f)
    assert all(r['resumed'] for recs in res['step_seconds'].values() for r in recs)
