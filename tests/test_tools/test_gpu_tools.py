"""tools/benchmarks/input_pipeline.py --quick measures every path and writes its JSON; gpu_check.sh runs end to
end on the CPU at its tiny size (the CUDA-only comparisons run CPU against CPU there)."""
import json
import os
import os.path as osp
import subprocess
import sys

from helpers import ROOT

PATHS = ('stage1/official', 'stage1/cpu-pil', 'stage1/cpu', 'stage1/gpuaug', 'stage3/official', 'stage3/cpu-pil',
         'stage3/cpu', 'stage3/gpuaug', 'stage3/cpu+pillow', 'stage3/gpuaug+pillow')


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, OMP_NUM_THREADS='1')


def test_input_pipeline_quick_writes_json(tmp_path):
    out = tmp_path / 'ip.json'
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/benchmarks/input_pipeline.py'), '--quick', '--work-dir',
        str(tmp_path), '--out',
        str(out)
    ],
                          cwd=ROOT,
                          env=_env(),
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result['one_core']) == set(PATHS)
    for name in PATHS:
        assert result['one_core'][name]['ms'] > 0
        (run, ) = result['workers'][name]
        assert run['workers'] == 1 and run['worker_ms'] > 0
    assert result['data']['num_images'] == 4 and 40 < result['data']['mean_jpeg_kib'] < 400
    for name in PATHS:  # a table row per path, the baseline's ratio 1
        assert f'| {name} |' in result['table']
    assert '| stage3/official | ' in result['table'] and ' | 1.00 | ' in result['table']
    assert 'stage3/cpu' in proc.stdout and 'wrote' in proc.stdout


def test_gpu_check_runs_on_the_cpu(tmp_path):
    """About a minute on 2 cores: four tiny training runs (stage 1 / 3, CPU- and device-side
    augmentation) and the mining comparisons, the whole prepared script."""
    out = tmp_path / 'gc.json'
    proc = subprocess.run(
        ['bash',
         osp.join(ROOT, 'tools/benchmarks/gpu_check.sh'), '--work-dir',
         str(tmp_path), '--out',
         str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['meta']['tiny'] is True
    checks = [r['check'] for r in report['rows']]
    for stage in ('stage1', 'stage3'):
        for aug in ('cpu', 'gpu'):
            row = report['rows'][checks.index(f'{stage} training, {aug}-side augmentation')]
            assert row['ok'] is True and row['ms_per_iter'] > 0, row
    assert any(c.startswith('GPU-side augmentation') for c in checks)
    assert any(c.startswith('2a KNN') for c in checks) and any(c.startswith('2c pairs') for c in checks)
    assert any(c.startswith('2-process NCCL') for c in checks)
    assert not [r for r in report['rows'] if r['ok'] is False]
    assert '| check | result | ok |' in proc.stdout
