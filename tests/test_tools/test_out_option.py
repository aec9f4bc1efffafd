"""Every benchmark and analysis tool takes ``--out FILE`` the same way: the results file, said so in its
``--help``, and a folder given there is one line and exit status 2 before any work."""
import glob
import importlib.util
import os.path as osp
import sys

import pytest
from helpers import ROOT

from orl_plugin.utils.error_policy import run_cli

# tool -> the positional arguments it needs (never read: --out is checked first)
TOOLS = {
    'benchmarks/folder_timing.py': [],
    'benchmarks/gpu_check.py': [],
    'benchmarks/input_pipeline.py': [],
    'benchmarks/mining_speed.py': [],
    'benchmarks/online_probe_cost.py': [],
    'benchmarks/selective_search_max_size.py': [],
    'benchmarks/selective_search_speed.py': [],
    'benchmarks/store_scale.py': [],
    'analysis_tools/check_images.py': ['photos'],
    'analysis_tools/object_probe.py': ['config.py', 'random'],
    'analysis_tools/plot_curves.py': ['work_dir'],
    'analysis_tools/score_pairs.py': ['pairs.orlstore', 'ann.json'],
}


def _tool(rel: str):
    path = osp.join(ROOT, 'tools', rel)
    spec = importlib.util.spec_from_file_location('orl_tool_' + osp.basename(rel)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_tool_that_writes_results_is_listed():
    paths = glob.glob(osp.join(ROOT, 'tools', 'benchmarks', '*.py')) + glob.glob(
        osp.join(ROOT, 'tools', 'analysis_tools', '*.py'))
    scripts = {osp.relpath(p, osp.join(ROOT, 'tools')) for p in paths if "'--out'" in open(p).read()}
    assert scripts == set(TOOLS)


@pytest.mark.parametrize('rel', sorted(TOOLS))
def test_out_is_a_file_checked_before_any_work(rel, tmp_path, capsys):
    tool = _tool(rel)
    with pytest.raises(SystemExit) as info:
        run_cli(tool.main, TOOLS[rel] + ['--help'])
    assert info.value.code == 0
    assert 'the results file (' in ' '.join(capsys.readouterr().out.split())

    folder = tmp_path / 'results'
    folder.mkdir()
    with pytest.raises(SystemExit) as info:
        run_cli(tool.main, TOOLS[rel] + ['--out', str(folder)])
    assert info.value.code == 2
    (line, ) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f'error: --out {folder}: is a folder')
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ['results']
