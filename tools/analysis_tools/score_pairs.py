#!/usr/bin/env python
"""Score mined RoI pairs against ground truth: how often do they show the same kind of object?

Reads a correspondence output of 2c (a native ``*.orlstore`` directory or an official ORL
``*.json``) and a COCO-format annotation file of the same images, and prints the figures of
``CorrespondenceMetric`` beside their random levels (pairs drawn uniformly from the same kept
boxes): pair precision, object-pair rate and the same-category share among object pairs, for
both object criteria (IoU >= 0.5 with a GT box; the box lying mostly inside one object, on the
objects' masks where the file has ``segmentation``, else on their boxes). Use it to score the
official release's files on COCO, or pairs mined before the annotations had masks.

    python tools/analysis_tools/score_pairs.py work_dirs/orl/correspondence/correspondence.orlstore \\
        data/synthetic_scenes/annotations/instances_train.json --out work_dirs/pairs_score.json
"""
from __future__ import annotations

import argparse
import os.path as osp
from typing import Dict, List, Optional

import numpy as np

from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.evaluation.correspondence_metric import CRITERION_SUFFIX, pair_precision
from orl_plugin.store import MiningStore, atomic_write_json
from orl_plugin.utils.error_policy import InputError, check_out_file, out_help, run_cli

FIGURES = ('pair_precision', 'pair_object_rate', 'pair_precision_on_objects', 'kept_object_rate')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('pairs', help='correspondence *.orlstore directory or official ORL *.json')
    p.add_argument('ann_file', help='COCO-format JSON of the mined images, with annotations')
    p.add_argument('--img-prefix', default='', help='image folder (only used to resolve paths; images are not read)')
    p.add_argument('--iou-thr', type=float, default=0.5)
    p.add_argument('--inside-thr', type=float, default=0.5)
    p.add_argument('--out', metavar='FILE', help=out_help('JSON; without --out the results are only printed'))
    return p.parse_args(argv)


def score(pairs_path: str,
          ann_file: str,
          img_prefix: str = '',
          iou_thr: float = 0.5,
          inside_thr: float = 0.5) -> Dict[str, float]:
    """The correspondence figures of ``pairs_path`` against the ground truth of ``ann_file``."""
    infos = scene_data_infos(dict(ann_file=ann_file, data_prefix=dict(img_path=img_prefix), test_mode=True))
    if not any('gt_bboxes' in info for info in infos):
        raise InputError(f'{osp.abspath(ann_file)}: no "annotations"; scoring pairs needs ground-truth boxes')
    store = MiningStore.open(
        pairs_path, kind='correspondence', images=ann_file if pairs_path.endswith('.json') else None)
    by_name = {info['file_name']: info for info in infos}
    names = store.file_names() if store.has_image_list else None
    if names is None and len(store) != len(infos):
        raise InputError(f'{osp.abspath(pairs_path)} lists {len(store)} images and {osp.abspath(ann_file)} '
                         f'{len(infos)}; without file names they must be the same list')
    matched: List[Optional[dict]] = []
    for i in range(len(store)):
        info = by_name.get(names[i]) if names is not None else infos[i]
        if info is None:
            raise InputError(f'{osp.abspath(pairs_path)}: image {i} ({names[i]}) is not in {osp.abspath(ann_file)}')
        matched.append(info)
    k = store.num_neighbours
    knn = np.stack([np.asarray(store.knn(i), dtype=np.int64).reshape(k) for i in range(len(store))])
    pairs = [[np.asarray(store.pairs(i, j)).reshape(-1, 8) for j in range(k)] for i in range(len(store))]
    out = pair_precision(
        pairs,
        knn, [info.get('gt_bboxes') for info in matched], [info.get('gt_labels') for info in matched],
        iou_thr,
        kept_boxes=[store.boxes(i) for i in range(len(store))],
        inside_thr=inside_thr,
        gt_masks=[info.get('gt_masks') for info in matched],
        img_sizes=[(info['height'], info['width']) if 'height' in info else None for info in matched])
    if not out:
        raise InputError(f'{osp.abspath(pairs_path)}: no pair could be scored (no pairs, or no image with '
                         'ground truth)')
    return out


def _cell(v: Optional[float]) -> str:
    # a figure without a random level (the kept-box rate is a property of the boxes, not of pairs): '-'
    return '-' if v is None or v != v else f'{v:.4f}'


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out_file = check_out_file(args.out) if args.out is not None else None
    out = score(args.pairs, args.ann_file, args.img_prefix, args.iou_thr, args.inside_thr)
    rule = 'masks' if out.get('inside_rule_masks', 0.0) >= 1.0 else (
        'boxes' if not out.get('inside_rule_masks') else f'masks on {out["inside_rule_masks"]:.0%} of the images')
    print(f'{args.pairs}: {out["scored_pairs"]} pairs scored; "inside an object" judged on {rule}')
    print('| figure | IoU >= %g | (random) | inside >= %g | (random) |' % (args.iou_thr, args.inside_thr))
    print('|---|---|---|---|---|')
    for fig in FIGURES:
        cells = []
        for s in CRITERION_SUFFIX.values():
            cells += [_cell(out.get(fig + s)), _cell(out.get(fig + s + '_random'))]
        print(f'| {fig} | ' + ' | '.join(cells) + ' |')
    if out_file:
        atomic_write_json(
            out_file, dict(pairs=osp.abspath(args.pairs), ann_file=osp.abspath(args.ann_file), **out), indent=2)
    return 0


if __name__ == '__main__':
    run_cli(main)
