"""Draw a training run's curves to a PNG: the losses, the probes and the feature ranks of its log.

Reads ``vis_data/scalars.json``, which mmengine's ``LocalVisBackend`` writes beside every run's log
(``WORK_DIR/TIMESTAMP/vis_data/``), and draws one panel per kind of curve it finds:

- loss: the total and each term (``loss``, ``loss_global``, ``loss_intra``, ``loss_inter``, ...);
- probes: every ``probe/*top1`` (solid), its value at the start (``*_init``, dotted) and its chance
  level (``*_chance``, dashed), in the probe's colour;
- rank (log scale): the collapse monitor's ``monitor/projector_rank`` and the view probe's
  ``probe/view_rank`` (with ``--min-rank``, the monitor's warning threshold, dashed red).

    python tools/analysis_tools/plot_curves.py work_dirs/byol_resnet18_1xb32-coslr-30e_synthetic --out curves.png

RUN_DIR may be a work dir (its newest run is drawn), one run's folder, its ``vis_data`` folder or the
``scalars.json`` file itself.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from orl_plugin.utils.error_policy import InputError, check_out_file, out_help, run_cli  # noqa: E402

Curves = Dict[str, List[Tuple[float, float]]]


def find_scalars(run_dir: str) -> str:
    """The ``scalars.json`` of ``run_dir`` (the newest run of a work dir)."""
    if osp.isfile(run_dir):
        return run_dir
    for candidate in (osp.join(run_dir, 'scalars.json'), osp.join(run_dir, 'vis_data', 'scalars.json')):
        if osp.isfile(candidate):
            return candidate
    runs = sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json')))
    if runs:
        return runs[-1]  # run folders are timestamps: the last one is the newest
    if not osp.exists(run_dir):
        raise FileNotFoundError(2, 'No such file or directory', run_dir)
    raise InputError(f'{run_dir}: no vis_data/scalars.json in it or in its run folders (mmengine writes it with '
                     'the LocalVisBackend of every config here)')


def read_curves(path: str) -> Curves:
    """Every numeric key of ``scalars.json`` as ``[(step, value), ...]``."""
    curves: Curves = defaultdict(list)
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f'{path}: line {number} is not JSON ({e.msg})') from e
            step = record.get('step', record.get('iter'))
            if step is None:
                continue
            for key, value in record.items():
                if key not in ('step', 'iter', 'epoch') and isinstance(value, (int, float)):
                    curves[key].append((float(step), float(value)))
    return dict(curves)


def panels(curves: Curves) -> Dict[str, List[str]]:
    """The keys each panel draws (panels without curves are left out)."""
    out = dict(
        loss=sorted(k for k in curves if k == 'loss' or k.startswith('loss_')),
        probes=sorted(k for k in curves if k.startswith('probe/') and 'rank' not in k),
        rank=sorted(k for k in curves if k == 'monitor/projector_rank' or k.startswith('probe/view_rank')))
    return {name: keys for name, keys in out.items() if keys}


def _family(key: str) -> str:
    """A curve and its start value and chance level share a colour."""
    for suffix in ('_init', '_chance'):
        if key.endswith(suffix):
            return key[:-len(suffix)] + ('_top1' if suffix == '_chance' and 'top1' not in key else '')
    return key


def _style(key: str, colour: str) -> dict:
    if key.endswith('_chance'):
        return dict(linestyle='--', color=colour, linewidth=1, alpha=0.7)
    if key.endswith('_init'):
        return dict(linestyle=':', color=colour, linewidth=1.2)
    if key == 'loss':
        return dict(linewidth=2, color='black')
    return dict(linewidth=1.5, color=colour, marker='o' if key.startswith('probe/') else None, markersize=3)


def draw(curves: Curves, out: str, title: str, min_rank: Optional[float] = None) -> Dict[str, List[str]]:
    """Draw the panels of ``curves`` to ``out``; returns what was drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    drawn = panels(curves)
    if not drawn:
        raise InputError(f'{title}: no loss, probe or rank curve in it')
    fig, axes = plt.subplots(len(drawn), 1, figsize=(9, 3.2 * len(drawn)), sharex=True, squeeze=False)
    labels = dict(loss='loss', probes='probe top-1', rank='effective rank')
    palette = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, (name, keys) in zip(axes[:, 0], drawn.items()):
        families = sorted({_family(k) for k in keys})
        for key in keys:
            steps, values = zip(*curves[key])
            colour = palette[families.index(_family(key)) % len(palette)]
            ax.plot(steps, values, label=key, **_style(key, colour))
        if name == 'rank':
            ax.set_yscale('log')  # 1 (collapse) to hundreds of directions
            ax.yaxis.set_major_locator(FixedLocator([1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000]))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
            if min_rank is not None:
                ax.axhline(min_rank, color='red', linestyle='--', linewidth=1, label=f'warning below {min_rank:g}')
        ax.set_ylabel(labels[name])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc='best')
    axes[-1, 0].set_xlabel('iteration')
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return drawn


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run_dir', help='work dir, run folder, vis_data folder or scalars.json')
    parser.add_argument('--out', required=True, metavar='FILE', help=out_help('the PNG'))
    parser.add_argument('--min-rank', type=float, default=3.0, help="the collapse monitor's threshold (drawn)")
    args = parser.parse_args(argv)
    out = check_out_file(args.out)
    path = find_scalars(args.run_dir)
    os.makedirs(osp.dirname(out), exist_ok=True)
    drawn = draw(read_curves(path), out, osp.relpath(path), args.min_rank)
    print(f'wrote {out}: ' + '; '.join(f'{name}: {", ".join(keys)}' for name, keys in drawn.items()))
    return 0


if __name__ == '__main__':
    run_cli(main)
