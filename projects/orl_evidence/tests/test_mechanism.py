"""The mechanism yardstick (``projects.orl_evidence.mechanism``, its command line and ``gpu_evidence.sh``).

One quick run is shared by the tests: the random-init baseline (in-process checkpoint, probed as
initialised and BN-recalibrated), the instrument arm (a trained stage 1, 2a-2c, stage 3, the probes, both
fine-tunes), matched BYOL (stage 1, probe, fine-tune) and one extra 2c of the ratio characterisation:
ten stage processes, about 3 minutes on 2 idle cores. The other arms run the same steps with other
configs (tests/test_models/test_stage2_models.py mines from BYOL, MoCo v2 and classifier checkpoints); the full
four-arm --quick run takes about 11 minutes here. gpu_evidence.sh's CPU-tiny mode uses the same
arguments, so it resumes the quick run.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from projects.orl_evidence import mechanism as mech

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TOOLS = osp.join(ROOT, 'projects', 'orl_evidence', 'tools')
SCRIPT = osp.join(TOOLS, 'mechanism.py')
QUICK_ARGS = ['--quick', '--device', 'cpu', '--arms', 'instrument', '--ratios', '0.1', '0.2', '--no-design']


def _run(args, env_extra=None, cmd=None):
    # No PYTHONPATH: the command line finds the repository itself, and the pipeline puts it on the path of the
    # stage processes it launches (the instrument's configs import projects.orl_evidence).
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(env_extra or {})
    return subprocess.run(
        cmd or [sys.executable, SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _mtimes(out):
    return {
        p: os.stat(p).st_mtime_ns for p in glob.glob(osp.join(out, '**', '*.pth'), recursive=True) +
        glob.glob(osp.join(out, '**', '*.orlstore'), recursive=True)
    }


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('mechanism'))
    proc = _run(['--out', out, *QUICK_ARGS])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(out, 'results.json')) as f:
        return out, json.load(f), proc.stdout


def _numeric(x):
    return isinstance(x, (int, float)) and x == x


@pytest.mark.timeout(900)
def test_quick_run_writes_every_figure(quick_run):
    out, res, stdout = quick_run
    assert res['failures'] == []
    rec = res['arms']['instrument']['0']
    for key, path in mech.FIGURES:
        assert _numeric(mech._get(rec, path)), key
    assert osp.isfile(rec['stage1_checkpoint']) and osp.isfile(rec['stage3_checkpoint'])
    base = res['random_init']['0']
    for key in ('object_probe', 'object_probe_bn_recalibrated', 'view_retrieval', 'view_retrieval_bn_recalibrated'):
        assert _numeric(base['probe'][key]), key
    # the random init loads with plain torch.load(weights_only=True) (portable checkpoint)
    import torch
    assert any(k.startswith('backbone.') for k in torch.load(base['checkpoint'], weights_only=True)['state_dict'])
    assert res['arms']['instrument']['0']['label'].startswith('MEASURING INSTRUMENT, NOT ORL')
    inst = res['setup']['instrument_scenes']  # trained on its own scenes, not on the ones it is measured on
    assert sum(inst['images'].values()) == 24 and inst['data_root'] != res['setup']['data_root']
    assert osp.isfile(osp.join(inst['data_root'], 'annotations', 'instances_train.json'))
    ss = res['data']['selective_search']['metrics']
    assert _numeric(ss['recall@0.5_raw']) and _numeric(ss['recall@0.5_raw_random'])
    (byol, ) = res['byol_matched'].values()
    assert byol['epochs'] >= 1 and _numeric(byol['probe']['object_probe']) and _numeric(byol['finetune']['bbox_mAP'])
    assert set(res['characterisation']['ratios']) == {'0.1', '0.2'}
    for r in res['characterisation']['ratios'].values():
        assert _numeric(r['pair_object_rate_inside']) and _numeric(r['pair_object_rate_inside_random'])
    # every step printed its start and end, the table and every target came out
    for step in ('stage1', 'probe_stage1', 'knn', 'selective_search', 'correspondence', 'stage3', 'probe_stage3',
                 'finetune_stage3', 'finetune_stage1'):
        assert f'{step}: finished' in stdout
    assert '| instrument (instrument, not ORL) |' in stdout
    assert len(res['targets']) == 6 and all(t['passed'] in (True, False, None) for t in res['targets'])
    assert stdout.count('PASS') + stdout.count('FAIL') + stdout.count('NOT MEASURED') >= 6


@pytest.mark.timeout(900)
def test_second_invocation_resumes_without_training(quick_run):
    out, first, _ = quick_run
    before = _mtimes(out)
    proc = _run(['--out', out, *QUICK_ARGS])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _mtimes(out) == before and before  # no checkpoint or store rewritten
    with open(osp.join(out, 'results.json')) as f:
        again = json.load(f)
    steps = [r for recs in again['step_seconds'].values() for r in recs]
    assert steps and all(r['resumed'] for r in steps), [r for r in steps if not r['resumed']]
    assert again['table'] == first['table']

    # --collect runs nothing: a step not done yet (a third ratio) is listed as pending, not run
    proc = _run(['--out', out, *QUICK_ARGS, '--collect', '--ratios', '0.1', '0.2', '0.05'])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not osp.exists(osp.join(out, 'characterise', 'ratio_0.05'))
    with open(osp.join(out, 'results.json')) as f:
        collected = json.load(f)
    assert collected['pending'] == [dict(who='instrument characterisation', step='correspondence ratio=0.05')]
    assert collected['table'] == first['table'] and 'Pending steps' in proc.stdout


def test_targets_are_computed_from_the_numbers():

    def s(mean, std=0.0, n=3):
        return dict(mean=mean, std=std, n=n, values=[mean] * n)

    good = dict(
        instrument=dict(
            pair_precision_on_objects=s(0.95),
            pair_precision_on_objects_random=s(0.2),
            pair_precision_on_objects_inside=s(0.92),
            pair_precision_on_objects_inside_random=s(0.25),
            knn_precision=s(0.8),
            knn_precision_random=s(0.5),
            stage3_object_probe=s(0.7, 0.01),
            stage3_det_mAP=s(0.3, 0.01)),
        byol_matched=dict(object_probe=s(0.6, 0.01), det_mAP=s(0.2, 0.01)),
        random_init=dict(
            object_probe_bn_recalibrated=s(0.5),
            view_retrieval_bn_recalibrated=s(0.02),
            object_probe_queries=s(1000),
            view_retrieval_images=s(256)),
        mocov2=dict(
            stage1_object_probe=s(0.6),
            stage1_view_retrieval=s(0.02),
            knn_precision=s(0.65),
            knn_precision_random=s(0.5)))
    assert [t['passed'] for t in mech.evaluate_targets(good)] == [True] * 6

    bad = json.loads(json.dumps(good))
    bad['instrument']['pair_precision_on_objects'] = s(0.85)  # under 0.9
    bad['instrument']['pair_precision_on_objects_inside_random'] = s(0.35)  # 0.92 < 3 x 0.35
    bad['instrument']['knn_precision'] = s(0.64)  # random + 0.14
    bad['instrument']['stage3_object_probe'] = s(0.61, 0.01)  # 1 std above BYOL, not 2
    bad['instrument']['stage3_det_mAP'] = s(0.1, 0.01)  # below BYOL
    bad['mocov2']['stage1_object_probe'] = s(0.52)  # 0.02 over 0.5 with 1000 queries: 1.3 SE
    assert [t['passed'] for t in mech.evaluate_targets(bad)] == [False] * 6

    weak_knn = json.loads(json.dumps(good))
    weak_knn['mocov2']['knn_precision'] = s(0.55)  # probe passes, KNN only random + 0.05
    assert mech.evaluate_targets(weak_knn)[-1]['passed'] is False
    one_seed = json.loads(json.dumps(good))
    one_seed['byol_matched']['det_mAP'] = s(0.2, 0.0, n=1)
    assert mech.evaluate_targets(one_seed)[4]['passed'] is None  # no spread from one seed: not measured
    assert mech.evaluate_targets({})[0]['passed'] is None


def test_instrument_scenes_reach_only_the_instruments_training():
    args = mech.parse_args(
        ['--instrument-scenes', '1000', '--cfg-options', 'stage1:val_dataloader.dataset.data_root=/u'])
    assert args.instrument_scenes == 1000
    opts = mech.arm_options('instrument', 0, args, '/inst')
    roots = [o for o in opts if 'data_root' in o]
    assert 'stage1:train_dataloader.dataset.data_root=/inst' in roots
    assert 'stage1:test_dataloader.dataset.data_root=/inst' in roots
    assert roots[-1] == 'stage1:val_dataloader.dataset.data_root=/u'  # the user's item comes last and wins
    assert not [o for o in mech.arm_options('mocov2', 0, args, '/inst') if '/inst' in o]
    assert not [o for o in mech.arm_options('instrument', 0, args, None) if '/inst' in o]


def test_markers_follow_the_checkpoint_they_measured(tmp_path, monkeypatch):
    """A probe or fine-tune marker is not reused once its checkpoint has been retrained in place."""
    ckpt, marker = tmp_path / 'epoch_1.pth', str(tmp_path / 'probe.done.json')
    ckpt.write_bytes(b'model A')
    calls = []

    def probe():
        calls.append(1)
        return dict(object_probe=0.5 + len(calls))

    assert mech.marker_step(marker, probe, source=str(ckpt)) == dict(object_probe=1.5, resumed=False)
    assert mech.marker_step(marker, probe, source=str(ckpt)) == dict(object_probe=1.5, resumed=True)
    ckpt.write_bytes(b'model B, retrained')
    os.utime(ckpt, ns=(1, 1))
    assert mech.marker_step(marker, probe, source=str(ckpt))['object_probe'] == 2.5 and len(calls) == 2

    # the fine-tune's marker: same command, but the pretrained file changed -> it runs again
    work = tmp_path / 'ft'
    monkeypatch.setattr(mech.transfer.subprocess, 'call', lambda *a, **k: 0)
    monkeypatch.setattr(mech.transfer, 'read_run_metrics', lambda d: {})
    config = mech.resolve_configs('synthetic')[1]['finetune']
    args = (osp.join(ROOT, config), str(ckpt), str(work), 0, 2, str(tmp_path), [], False)
    assert mech.transfer.finetune(*args)['resumed'] is False
    assert mech.transfer.finetune(*args)['resumed'] is True
    ckpt.write_bytes(b'model C')
    monkeypatch.setattr(mech.transfer.subprocess, 'call', lambda *a, **k: 1)
    with pytest.raises(RuntimeError, match='fine-tune failed'):  # launched, not answered from the marker
        mech.transfer.finetune(*args)


@pytest.mark.timeout(900)
def test_gpu_evidence_cpu_tiny_mode(quick_run):
    out, first, _ = quick_run
    proc = _run(
        [],
        env_extra=dict(OUT=out, PYTHON=sys.executable, STAGE3_ARMS='0'),  # its arms: test_stage3_arms.py
        cmd=['bash', osp.join(TOOLS, 'gpu_evidence.sh'), '--cpu-tiny'])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'gpu_evidence.sh (cpu-tiny)' in proc.stdout and 'finished in' in proc.stdout
    assert osp.isfile(osp.join(out, 'console.log'))
    with open(osp.join(out, 'results.json')) as f:
        res = json.load(f)
    assert res['setup']['quick'] and res['setup']['device'] == 'cpu'
    assert all(r['resumed'] for recs in res['step_seconds'].values() for r in recs)  # same arguments as the quick run
    # without a GPU, the GPU mode says so in one line instead of starting
    import torch
    if not torch.cuda.is_available():
        proc = _run([],
                    env_extra=dict(OUT=osp.join(out, 'gpu'), PYTHON=sys.executable),
                    cmd=['bash', osp.join(TOOLS, 'gpu_evidence.sh')])
        assert proc.returncode == 2 and 'no CUDA device' in proc.stderr
