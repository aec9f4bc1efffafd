"""tools/analysis_tools/plot_curves.py: a run's loss, probe and rank curves to a PNG."""
import json
import os
import os.path as osp
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))

import plot_curves  # noqa: E402


def _run_dir(tmp_path, timestamps=('20260101_000000', '20260102_000000'), full=True):
    """A work dir with runs of losses; the newest one has every kind of curve when ``full``."""
    for i, ts in enumerate(timestamps):
        vis = tmp_path / ts / 'vis_data'
        os.makedirs(vis)
        lines = [
            dict(lr=0.05, loss=4.0 - 0.1 * it, loss_global=2.0, loss_intra=1.0 - 0.01 * it, iter=it, step=it)
            for it in range(10, 110, 10)
        ]
        if full and i == len(timestamps) - 1:
            lines += [{
                'probe/coco_object_knn_top1': 0.1 + 0.01 * it, 'probe/coco_object_knn_top1_init': 0.1,
                'probe/coco_object_knn_chance': 0.05, 'step': it
            } for it in (0, 50, 100)]
            lines += [{'monitor/projector_rank': 30.0 - 0.2 * it, 'step': it} for it in range(1, 101, 10)]
            lines += [{'probe/view_rank': 20.0, 'probe/view_rank_init': 25.0, 'step': it} for it in (0, 100)]
        with open(vis / 'scalars.json', 'w') as f:
            f.write('\n'.join(json.dumps(rec) for rec in lines) + '\n')
    return tmp_path


def test_draws_every_kind_of_curve_of_the_newest_run(tmp_path, capsys):
    run = _run_dir(tmp_path / 'work')
    out = tmp_path / 'curves.png'
    assert plot_curves.main([str(run), '--out', str(out)]) == 0
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 20000
    printed = capsys.readouterr().out
    assert '20260102_000000' in plot_curves.find_scalars(str(run))
    assert 'loss: loss, loss_global, loss_intra' in printed
    probes = ', '.join(f'probe/coco_object_knn_{k}' for k in ('chance', 'top1', 'top1_init'))
    assert f'probes: {probes}' in printed
    assert 'rank: monitor/projector_rank, probe/view_rank, probe/view_rank_init' in printed
    curves = plot_curves.read_curves(plot_curves.find_scalars(str(run)))
    assert curves['monitor/projector_rank'][0] == (1.0, pytest.approx(29.8)) and 'lr' in curves


def test_a_run_with_losses_only_gets_one_panel(tmp_path):
    run = _run_dir(tmp_path / 'work', timestamps=('20260101_000000', ), full=False)
    curves = plot_curves.read_curves(plot_curves.find_scalars(str(run / '20260101_000000')))
    assert list(plot_curves.panels(curves)) == ['loss']


@pytest.mark.parametrize('what', ['missing', 'empty'])
def test_no_log_is_one_line_and_status_2(tmp_path, capsys, what):
    from orl_plugin.utils.error_policy import run_cli
    run = tmp_path / 'run'
    if what == 'empty':
        os.makedirs(run)
    with pytest.raises(SystemExit) as info:
        run_cli(plot_curves.main, [str(run), '--out', str(tmp_path / 'x.png')])
    assert info.value.code == 2
    (line, ) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith('error: ') and str(run) in line
