"""MiningLoop: chunk cache codec, bad images, resume after SIGKILL, 1 rank vs 2 ranks."""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT
from mmengine.config import Config
from mmengine.runner import Runner

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.datasets.transforms.loading import BadImageError, LoadImageOrSkip
from orl_plugin.engine.runners.chunk_cache import decode_results, encode_results
from orl_plugin.store import MiningStore

PY = sys.executable
SS_CONFIG = osp.join(ROOT, 'configs/orl/stage2/selective-search_synthetic.py')
NUM_TRAIN = 16


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('scenes'))
    make_synthetic_scenes(out, num_images=20, seed=1, img_size=(128, 128))  # 16 train images
    return out


def _store_arrays(path):
    """Every array file of a store, byte for byte, and its header without run-specific fields."""
    files = {}
    for f in sorted(os.listdir(path)):
        with open(osp.join(path, f), 'rb') as fh:
            files[f] = fh.read()
    header = json.loads(files.pop('header.json'))
    for key in ('provenance', 'uid'):
        header.pop(key, None)
    return files, header


def _ss_options(data_root, out, chunk_size, workers=0):
    return [
        '--cfg-options', f'test_dataloader.dataset.data_root={data_root}', f'test_evaluator.out_file={out}',
        f'test_cfg.chunk_size={chunk_size}', f'test_dataloader.num_workers={workers}', 'log_level=INFO'
    ]


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', PYTHON=PY)
    env.pop('RANK', None)
    return env


def test_chunk_codec_roundtrip():
    results = [
        dict(index=0, proposals=np.arange(8, dtype=np.int32).reshape(2, 4), embedding=np.ones(3, np.float32)),
        dict(index=1, skipped=True, skip_reason='x.jpg: empty file'),
        dict(index=2, proposals=np.zeros((0, 4), np.int32), embedding=np.zeros(3, np.float32)),
    ]
    back = decode_results(encode_results(results))
    assert len(back) == 3
    assert back[1] == dict(index=1, skipped=True, skip_reason='x.jpg: empty file')
    for a, b in ((results[0], back[0]), (results[2], back[2])):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
            assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
    with pytest.raises(ValueError, match='dtype'):
        encode_results([dict(index=0, b=np.zeros((1, 4), np.int32)), dict(index=1, b=np.zeros((1, 4), np.float32))])


def test_load_image_or_skip_names_the_file(tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'not an image')
    with pytest.raises(BadImageError, match='bad.jpg: cannot decode'):
        LoadImageOrSkip()(dict(img_path=str(bad)))
    (tmp_path / 'empty.jpg').write_bytes(b'')
    with pytest.raises(BadImageError, match='empty file'):
        LoadImageOrSkip()(dict(img_path=str(tmp_path / 'empty.jpg')))
    with pytest.raises(BadImageError, match='missing.jpg: cannot read'):
        LoadImageOrSkip()(dict(img_path=str(tmp_path / 'missing.jpg')))


def test_bad_images_are_skipped_counted_and_listed(scenes, tmp_path):
    data = str(tmp_path / 'scenes')
    os.symlink(osp.join(scenes, 'annotations'), osp.join(tmp_path, 'ann'))
    os.makedirs(osp.join(data, 'images'))
    os.symlink(osp.join(tmp_path, 'ann'), osp.join(data, 'annotations'))
    for f in sorted(os.listdir(osp.join(scenes, 'images')))[:6]:
        os.symlink(osp.join(scenes, 'images', f), osp.join(data, 'images', f))
    with open(osp.join(data, 'images', '000006.jpg'), 'wb') as f:
        f.write(b'\xff\xd8 truncated garbage')  # corrupt; 000007.jpg on is missing
    cfg = Config.fromfile(SS_CONFIG)
    cfg.merge_from_dict({
        'test_dataloader.dataset.data_root': data,
        'test_dataloader.num_workers': 2,
        'test_dataloader.batch_size': 3,
        'test_cfg.chunk_size': 5,
        'test_evaluator.out_file': str(tmp_path / 'ss.orlstore'),
        # 10 bad of 16 would stop the step (test_bad_images.py): here only the skipping and the listing count
        'test_dataloader.dataset.max_bad_fraction': None
    })
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = 'bad_images'
    cfg.log_level = 'WARNING'
    metrics = Runner.from_cfg(cfg).test()
    assert metrics['selective_search/num_skipped'] == NUM_TRAIN - 6
    store = MiningStore.open(str(tmp_path / 'ss.orlstore'))
    assert store.num_images == NUM_TRAIN
    assert [s['index'] for s in store.skipped] == list(range(6, NUM_TRAIN))
    assert 'cannot decode' in store.skipped[0]['reason']
    assert 'cannot read' in store.skipped[1]['reason']
    assert store.skipped[1]['file_name'] == '000007.jpg'
    assert all(store.num_boxes(i) > 0 for i in range(6))
    assert all(store.num_boxes(i) == 0 for i in range(6, NUM_TRAIN))


def _run_in_process(data_root, out, work_dir, name, chunk_size, workers=0):
    cfg = Config.fromfile(SS_CONFIG)
    cfg.merge_from_dict({
        'test_dataloader.dataset.data_root': data_root, 'test_dataloader.num_workers': workers,
        'test_cfg.chunk_size': chunk_size, 'test_evaluator.out_file': out
    })
    cfg.work_dir, cfg.experiment_name, cfg.log_level = work_dir, name, 'WARNING'
    return Runner.from_cfg(cfg).test()


def test_resume_after_sigkill_is_byte_identical(scenes, tmp_path):
    """Kill the step (SIGKILL) once some chunks are cached, rerun, compare with a clean run."""
    ref_out = str(tmp_path / 'ref.orlstore')
    _run_in_process(scenes, ref_out, str(tmp_path / 'ref'), 'resume_ref', chunk_size=1)

    out = str(tmp_path / 'resumed.orlstore')
    work = str(tmp_path / 'run')
    args = [PY, 'tools/test.py', SS_CONFIG, '--work-dir', work] + _ss_options(scenes, out, 1)
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = osp.join(work, 'mining_cache', '*', '*', 'chunk_*.npz')
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(glob.glob(pattern)) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    assert not osp.exists(out)
    done_before = len(glob.glob(pattern))
    assert 2 <= done_before < NUM_TRAIN
    rerun = subprocess.run(args, cwd=ROOT, env=_env(), timeout=300, capture_output=True, text=True)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert f'{done_before} chunks cached, {NUM_TRAIN - done_before} to compute' in log
    assert _store_arrays(out) == _store_arrays(ref_out)


def test_one_rank_vs_two_ranks_identical(scenes, tmp_path):
    out1, out2 = str(tmp_path / 'r1.orlstore'), str(tmp_path / 'r2.orlstore')
    _run_in_process(scenes, out1, str(tmp_path / 'w1'), 'ss_1rank', chunk_size=3, workers=2)
    env = dict(_env(), PORT=str(29500 + (os.getpid() + 7) % 1000))
    run = subprocess.run(
        ['bash', 'tools/dist_test.sh', SS_CONFIG, 'none', '2', '--work-dir',
         str(tmp_path / 'w2')] + _ss_options(scenes, out2, 3, workers=1),
        cwd=ROOT,
        env=env,
        timeout=300,
        capture_output=True,
        text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # 16 images in chunks of 3: chunks 0, 2, 4 on rank 0 and 1, 3, 5 on rank 1
    assert len(glob.glob(str(tmp_path / 'w2' / 'mining_cache' / '*' / '*' / 'chunk_*'))) == 6
    assert _store_arrays(out1) == _store_arrays(out2)
