"""tools/benchmarks/online_probe_cost.py: the output path is checked first; the interval that keeps the probe
in budget."""
import os.path as osp
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))

import online_probe_cost  # noqa: E402


def test_a_bad_out_path_is_one_line_before_any_work(tmp_path, capsys):
    from orl_plugin.utils.error_policy import run_cli
    out = tmp_path / 'missing' / 'cost.json'
    with pytest.raises(SystemExit) as info:
        run_cli(online_probe_cost.main, ['--out', str(out)])
    assert info.value.code == 2
    (line, ) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith('error: --out') and str(tmp_path / 'missing') in line


@pytest.mark.parametrize('probe_s,epoch_s,interval', [(1.0, 100.0, 1), (2.0, 100.0, 1), (2.1, 100.0, 2),
                                                      (5.0, 60.0, 5)])
def test_interval_for_the_budget(probe_s, epoch_s, interval):
    row = dict(probe_s=probe_s, epoch_s=epoch_s)
    online_probe_cost._share(row)
    assert row['interval_for_budget'] == interval
    assert row['share_at_interval_1'] / row['interval_for_budget'] <= online_probe_cost.BUDGET
