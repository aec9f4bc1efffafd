#!/usr/bin/env python
"""ORL end to end on synthetic scenes, on a CPU, in a few minutes (``make demo``).

1. Generates the synthetic scenes under ``data/synthetic_scenes`` if they are not there yet.
2. Runs the ``synthetic`` preset of the pipeline with the detection fine-tune: stage-1 BYOL,
   KNN retrieval, selective search, RoI pair retrieval, stage-3 ORL, Faster R-CNN fine-tune of
   the stage-3 backbone - each stage through tools/train.py / tools/test.py / tools/det_train.py
   exactly as the pipeline runs them for a user, with the demo's size overrides (below).
3. Prints a table and writes ``work_dirs/demo/summary.json``; draws the proposals and the mined
   pairs of a few images into ``work_dirs/demo/*.png``.

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
import os
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional

import mmcv

from orl_plugin.store import MiningStore
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.pipeline import Pipeline, PipelineError, PipelineOptions
from orl_plugin.store import atomic_write_json
from orl_plugin.visualization.drawing import (draw_pairs, draw_proposals, find_image, load_gt_boxes,
                                              save_image)

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
        print(f'[demo] note: {data_root} already holds {total} images; the demo is sized for '
              f'{num_images} and will take about {total / num_images:.1f}x longer '
              '(use --data-root to let it make its own)', flush=True)
    return counts


def metric(stage: dict, *names: str) -> Optional[float]:
    """The first of ``names`` found in a stage's metrics (names differ by prefix only)."""
    for n in names:
        v = (stage or {}).get('metrics', {}).get(n)
        if v is not None:
            return v
    return None


def draw_examples(summary: dict, data_root: str, out_dir: str, indices: List[int]) -> List[str]:
    """PNGs for a few training images: raw selective-search boxes (2b) with the boxes 2c kept
    after ORL's filter and the ground truth; the RoI pairs mined with the nearest neighbour."""
    stages = summary['stages']
    ss = MiningStore.open(stages['selective_search']['outputs']['store'])
    corr = MiningStore.open(stages['correspondence']['outputs']['store'])
    gt = load_gt_boxes([osp.join(data_root, 'annotations', 'instances_train.json')])
    roots = [osp.join(data_root, 'images')]
    paths = []
    for i in indices:
        if i >= ss.num_images:
            continue
        img = mmcv.imread(find_image(ss.file_name(i), roots))
        vis = draw_proposals(img, ss.boxes(i), corr.boxes(i), gt.get(int(ss.image_ids[i])), max_raw=60)
        paths.append(save_image(vis, osp.join(out_dir, f'proposals_{i:03d}.png')))
        nb = int(corr.knn(i)[0])
        nimg = mmcv.imread(find_image(corr.file_name(nb), roots))
        vis = draw_pairs(img, nimg, corr.pairs(i, 0), query_boxes=corr.boxes(i),
                         neighbour_boxes=corr.boxes(nb), title=f'{i} -> {nb}')
        paths.append(save_image(vis, osp.join(out_dir, f'pairs_{i:03d}_nn0_{nb:03d}.png')))
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default=DEFAULT_DATA_ROOT)
    p.add_argument('--num-images', type=int, default=DEMO_NUM_IMAGES,
                   help='images to generate when the data root is empty')
    p.add_argument('--fresh', action='store_true', help='rerun every stage even if done')
    p.add_argument('--verbose', action='store_true', help="stream every stage's output")
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='[STAGE:]KEY=VALUE',
                   help='more overrides, after the demo ones')
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
        data_root=None if osp.normpath(args.data_root) == osp.normpath(DEFAULT_DATA_ROOT)
        else args.data_root,
        quiet=not args.verbose)
    pipe = Pipeline(opts)
    try:
        summary = pipe.run()
    except PipelineError as e:
        print(f'[demo] FAILED: {e}', file=sys.stderr)
        return 1
    t_pipe = time.time() - t0 - t_data

    pngs = draw_examples(summary, args.data_root, args.work_dir, [0, 1, 2])

    st = summary['stages']
    result = {
        'wall_time_s': round(time.time() - t0, 1),
        'wall_time_pipeline_s': round(t_pipe, 1),
        'stages_ran': [s for s, r in st.items() if not r.get('skipped')],
        'data': dict(root=osp.abspath(args.data_root), **data),
        'schedule': DEMO_SCHEDULE,
        'cfg_options': args.cfg_options,
        'stage1_checkpoint': st['stage1']['outputs']['checkpoint'],
        'stage3_checkpoint': st['stage3']['outputs']['checkpoint'],
        'detector_checkpoint': st['finetune']['outputs']['checkpoint'],
        'stage1_object_probe_top1': metric(st['stage1'], 'val/probe/object_knn_top1'),
        'stage1_object_probe_top1_at_init': metric(st['stage1'], 'val/probe/object_knn_top1_init'),
        'stage1_view_retrieval_top1': metric(st['stage1'], 'val/probe/view_top1'),
        'stage1_view_retrieval_top1_at_init': metric(st['stage1'], 'val/probe/view_top1_init'),
        'stage1_view_retrieval_chance': metric(st['stage1'], 'val/probe/view_chance'),
        'knn_category_precision': metric(st['knn'], 'knn/category_precision@10'),
        'knn_category_precision_at_1': metric(st['knn'], 'knn/category_precision@1'),
        'knn_category_precision_random_neighbour': metric(st['knn'], 'knn/category_precision_random'),
        'proposal_recall_raw': metric(st['selective_search'], 'selective_search/recall@0.5_raw'),
        'proposal_recall_filtered': metric(st['selective_search'], 'selective_search/recall@0.5_filtered'),
        'correspondence_pair_precision': metric(st['correspondence'], 'correspondence/pair_precision'),
        'correspondence_pair_precision_random': metric(st['correspondence'],
                                                       'correspondence/pair_precision_random'),
        'correspondence_pair_object_rate': metric(st['correspondence'], 'correspondence/pair_object_rate'),
        'correspondence_pair_object_rate_random': metric(st['correspondence'],
                                                         'correspondence/pair_object_rate_random'),
        'finetune_bbox_mAP': metric(st['finetune'], 'val/coco/bbox_mAP', 'coco/bbox_mAP'),
        'finetune_bbox_mAP_50': metric(st['finetune'], 'val/coco/bbox_mAP_50', 'coco/bbox_mAP_50'),
        'stages': {s: dict(skipped=r.get('skipped'), wall_s=r.get('wall_s'), cpu_s=r.get('cpu_s'),
                           log=r.get('log'), outputs=r.get('outputs'), metrics=r.get('metrics'))
                   for s, r in st.items()},
        'images': pngs,
    }
    os.makedirs(args.work_dir, exist_ok=True)
    out = osp.join(args.work_dir, 'summary.json')
    atomic_write_json(out, result, indent=2)

    def f(v: Any) -> str:
        return '-' if v is None else (f'{v:.3f}' if isinstance(v, float) else str(v))

    rows = [
        ('data', f"{data['train']['images']} train / {data['val']['images']} val images"),
        ('stage-1 checkpoint', result['stage1_checkpoint']),
        ('stage-1 object kNN probe top-1',
         f"{f(result['stage1_object_probe_top1'])} (random init: {f(result['stage1_object_probe_top1_at_init'])})"),
        ('stage-1 held-out view retrieval top-1',
         f"{f(result['stage1_view_retrieval_top1'])} (random init: "
         f"{f(result['stage1_view_retrieval_top1_at_init'])}, chance: {f(result['stage1_view_retrieval_chance'])})"),
        ('KNN category precision@10',
         f"{f(result['knn_category_precision'])} "
         f"(random neighbour: {f(result['knn_category_precision_random_neighbour'])})"),
        ('proposal recall@0.5 raw / kept', f"{f(result['proposal_recall_raw'])} / "
                                           f"{f(result['proposal_recall_filtered'])}"),
        ('pair precision (same category)',
         f"{f(result['correspondence_pair_precision'])} "
         f"(random pairs of the same boxes: {f(result['correspondence_pair_precision_random'])})"),
        ('stage-3 checkpoint', result['stage3_checkpoint']),
        ('fine-tuned bbox mAP (val)', f"{f(result['finetune_bbox_mAP'])} "
                                      f"(mAP@0.5 {f(result['finetune_bbox_mAP_50'])})"),
        ('pictures', f'{len(pngs)} PNG in {args.work_dir}'),
        ('wall time',
         f"{result['wall_time_s']:.0f} s (stages run: {', '.join(result['stages_ran']) or 'none'})"),
    ]
    width = max(len(r[0]) for r in rows)
    print('\n[demo] ORL on synthetic scenes')
    for k, v in rows:
        print(f'  {k:<{width}}  {v}')
    print(f'[demo] summary: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
