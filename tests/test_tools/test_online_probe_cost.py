"""tools/benchmarks/online_probe_cost.py: the interval that keeps the probe in budget (--out: test_out_option.py)."""
import os.path as osp
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))

import online_probe_cost  # noqa: E402


@pytest.mark.parametrize('probe_s,epoch_s,interval', [(1.0, 100.0, 1), (2.0, 100.0, 1), (2.1, 100.0, 2),
                                                      (5.0, 60.0, 5)])
def test_interval_for_the_budget(probe_s, epoch_s, interval):
    row = dict(probe_s=probe_s, epoch_s=epoch_s)
    online_probe_cost._share(row)
    assert row['interval_for_budget'] == interval
    assert row['share_at_interval_1'] / row['interval_for_budget'] <= online_probe_cost.BUDGET
