"""The command lines in projects/orl_evidence/tools: each runs from any directory without PYTHONPATH (it puts the
repository root on sys.path itself) and keeps its options."""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TOOLS = osp.join(ROOT, 'projects', 'orl_evidence', 'tools')
SCRIPTS = {
    'mechanism': ['--collect', '--quick', '--instrument-scenes', '--ratios', '--design', '--device', '--cfg-options'],
    'scene_premise': ['--designs', '--num-images', '--k', '--workers', '--fresh'],
    'stage1_curve': ['--config', '--arms', '--epochs', '--crop-epochs', '--view-size', '--probe-interval'],
    'synthetic_transfer': ['--arms', '--shared-pretrain', '--pretrain-per-seed', '--finetune-iters', '--quick'],
}


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_script_runs_from_anywhere(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, osp.join(TOOLS, f'{name}.py'), '--help'],
                          cwd=str(tmp_path),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(option in proc.stdout for option in SCRIPTS[name]), proc.stdout
