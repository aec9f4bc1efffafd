#!/usr/bin/env python
"""ORL end to end on synthetic scenes, on a CPU, in a few minutes (``make demo``).

1. Generates the synthetic scenes under ``data/synthetic_scenes`` if they are not there yet.
2. Runs the ``synthetic`` preset of the pipeline with the detection fine-tune: stage-1 BYOL,
   KNN retrieval, selective search, RoI pair retrieval, stage-3 ORL, Faster R-CNN fine-tune of
   the stage-3 backbone - each stage through tools/train.py / tools/test.py / tools/det_train.py
   exactly as the pipeline runs them for a user, with the demo's size overrides (below).
3. Prints a table and writes ``work_dirs/demo/summary.json``; draws the proposals and the mined
   pairs of a few images into ``work_dirs/demo/*.png`` (``orl_plugin.pipeline.reporting``, which
   ``orl-pipeline folder`` ends with too).

A second run skips the finished stages (the pipeline's done-markers) and only re-reports;
``--fresh`` runs everything again.

Size overrides. The shipped CPU configs (``*_synthetic.py``) are sized for a fuller CPU run
(30 + 30 pre-training epochs, 300 fine-tune iterations); the demo shortens the schedules so that
the whole thing fits in 10 minutes on 2 cores, and changes nothing else (models, views, mining
parameters, evaluators are the configs'). See ``DEMO_SCHEDULE``.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.pipeline import Pipeline, PipelineError, PipelineOptions
from orl_plugin.pipeline.reporting import write_report

DEFAULT_DATA_ROOT = 'data/synthetic_scenes'
# Data set size of the demo (a fresh data/synthetic_scenes; an existing one is used as it is).
DEMO_NUM_IMAGES = 100
DEMO_SEED = 0

# Training lengths (the pipeline's --schedule: epochs, iterations for the fine-tune; the LR
# schedules are rescaled with them). The shipped CPU configs run 30 + 30 pre-training epochs and a
# 300-iteration fine-tune; nothing else is changed.
DEMO_SCHEDULE: Dict[str, int] = {'stage1': 10, 'stage3': 8, 'finetune': 60}


def ensure_data(data_root: str, num_images: int, seed: int) -> Dict[str, Any]:
    ann = osp.join(data_root, 'annotations', 'instances_train.json')
    if not osp.isfile(ann):
        print(f'[demo] generating {num_images} synthetic scenes under {data_root} ...', flush=True)
        t0 = time.time()
        make_synthetic_scenes(data_root, num_images=num_images, seed=seed)
        print(f'[demo] data generated in {time.time() - t0:.1f} s', flush=True)
    counts = {}
    for split in ('train', 'val'):
        with open(osp.join(data_root, 'annotations', f'instances_{split}.json')) as f:
            d = json.load(f)
        counts[split] = dict(images=len(d['images']), objects=len(d.get('annotations', [])))
    total = counts['train']['images'] + counts['val']['images']
    if total > 1.5 * num_images:
        print(
            f'[demo] note: {data_root} already holds {total} images; the demo is sized for '
            f'{num_images} and will take about {total / num_images:.1f}x longer '
            '(use --data-root to let it make its own)',
            flush=True)
    return counts


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default=DEFAULT_DATA_ROOT)
    p.add_argument(
        '--num-images', type=int, default=DEMO_NUM_IMAGES, help='images to generate when the data root is empty')
    p.add_argument('--fresh', action='store_true', help='rerun every stage even if done')
    p.add_argument('--verbose', action='store_true', help="stream every stage's output")
    p.add_argument(
        '--cfg-options', nargs='+', default=[], metavar='[STAGE:]KEY=VALUE', help='more overrides, after the demo ones')
    args = p.parse_args(argv)

    t0 = time.time()
    data = ensure_data(args.data_root, args.num_images, DEMO_SEED)
    t_data = time.time() - t0
    opts = PipelineOptions(
        preset_or_dir='synthetic',
        work_dir=osp.join(args.work_dir, 'pipeline'),
        finetune=True,
        force=args.fresh,
        schedule=DEMO_SCHEDULE,
        cfg_options=args.cfg_options,
        # the configs' own data root needs no rewriting
        data_root=None if osp.normpath(args.data_root) == osp.normpath(DEFAULT_DATA_ROOT) else args.data_root,
        quiet=not args.verbose)
    pipe = Pipeline(opts)
    try:
        summary = pipe.run()
    except PipelineError as e:
        print(f'[demo] FAILED: {e}', file=sys.stderr)
        return 1
    t_pipe = time.time() - t0 - t_data

    write_report(
        summary,
        args.work_dir,
        title='ORL on synthetic scenes',
        tag='demo',
        data=dict(root=osp.abspath(args.data_root), **data),
        data_line=f"{data['train']['images']} train / {data['val']['images']} val images",
        image_roots=[osp.join(args.data_root, 'images')],
        gt_ann_files=[osp.join(args.data_root, 'annotations', 'instances_train.json')],
        started=t0,
        pipeline_wall_s=t_pipe,
        schedule=DEMO_SCHEDULE,
        cfg_options=args.cfg_options)
    return 0


if __name__ == '__main__':
    sys.exit(main())
