"""Does ORL's premise hold in the synthetic scenes? Figures from the ground truth alone, no network.

Per scene design: a 2a oracle's KNN category precision, the share of selective-search boxes kept by ORL's
filter that lie on an object, and 2c's random level under the oracle neighbours, each beside its random
level. Details: ``projects/orl_evidence/README.md``; command line: ``projects/orl_evidence/tools/scene_premise.py``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Tuple

import mmcv
import numpy as np

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.datasets.transforms.box_filter import filter_boxes
from orl_plugin.datasets.transforms.selective_search import selective_search
from orl_plugin.evaluation.box_metrics import (OBJECT_CRITERIA, gt_recall, matched_gt_labels, object_masks, on_object,
                                               xywh_to_xyxy)
from orl_plugin.evaluation.knn_metric import category_precision
from orl_plugin.evaluation.selective_search_metric import random_placement
from orl_plugin.store import atomic_write_json

#: Scene designs: ``make_synthetic_scenes`` arguments. ``v2`` is the default; the others change one option.
DESIGNS: Dict[str, Dict[str, Any]] = {
    'v1': dict(version=1),
    'v2': dict(),
    'types=2': dict(scene_types=2),
    'types=8': dict(scene_types=8),
    'cats/type=2': dict(categories_per_type=2),
    'cats/type=5': dict(categories_per_type=5),
    'off-type=0': dict(out_of_type=0.0),
    'off-type=0.3': dict(out_of_type=0.3),
    'clutter=0': dict(clutter=(0, 0)),
    'clutter=15-45': dict(clutter=(15, 45)),
    'objects=6-10': dict(num_objects=(6, 10)),
    'texture=0': dict(background_texture=0.0),
    'texture=2': dict(background_texture=2.0),
}
FILTER_CFG = dict(min_size=32, max_ratio=3.0, max_iou=0.5, topk=100)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='work_dirs/scene_premise', help='output folder (scenes, results.json)')
    p.add_argument('--designs', nargs='+', default=list(DESIGNS), choices=list(DESIGNS))
    p.add_argument('--num-images', type=int, default=400)
    p.add_argument('--img-size', type=int, default=256)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--k', type=int, default=10, help='neighbours per image (ORL: 10)')
    p.add_argument('--workers', type=int, default=1, help='processes for selective search')
    p.add_argument('--fresh', action='store_true', help='recompute designs already in results.json')
    args = p.parse_args(argv)
    if args.num_images < args.k + 2:
        p.error(f'--num-images must be at least k + 2 = {args.k + 2}')
    return args


def _image_boxes(job: Tuple[str, np.ndarray]) -> Tuple[int, np.ndarray]:
    """Raw selective-search box count and ORL's kept boxes of one image (pillow decoding, as 2b)."""
    path, _ = job
    img = mmcv.imread(path, backend='pillow')
    raw = selective_search(img, mode='fast')
    return len(raw), filter_boxes(raw, **FILTER_CFG)


def oracle_knn(types: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` random other images of each image's scene type (fewer others: all of them, then
    random images of other types), seeded."""
    rng = np.random.default_rng(seed)
    n = len(types)
    knn = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        same = np.flatnonzero(types == types[i])
        same = rng.permutation(same[same != i])[:k]
        if len(same) < k:
            others = np.setdiff1d(np.arange(n), np.append(same, i))
            same = np.append(same, rng.choice(others, k - len(same), replace=False))
        knn[i] = same
    return knn


def measure(ann_file: str, image_dir: str, k: int, seed: int, workers: int) -> Dict[str, float]:
    """The premise figures of one generated scene set (the README says what each is)."""
    with open(ann_file) as f:
        coco = json.load(f)
    images = coco['images']
    by_image: Dict[int, List[dict]] = {im['id']: [] for im in images}
    for a in coco['annotations']:
        by_image[a['image_id']].append(a)
    gt = [xywh_to_xyxy([a['bbox'] for a in by_image[im['id']]]) for im in images]
    labels = [np.array([a['category_id'] - 1 for a in by_image[im['id']]], dtype=np.int64) for im in images]
    jobs = [(osp.join(image_dir, im['file_name']), g) for im, g in zip(images, gt)]
    if workers > 1:
        with multiprocessing.get_context('fork').Pool(workers) as pool:
            boxes = pool.map(_image_boxes, jobs, chunksize=4)
    else:
        boxes = [_image_boxes(j) for j in jobs]
    raw_counts = np.array([b[0] for b in boxes])
    kept = [b[1] for b in boxes]

    out: Dict[str, float] = dict(
        num_images=len(images),
        objects_per_image=float(np.mean([len(lab) for lab in labels])),
        categories_per_image=float(np.mean([len(set(lab.tolist())) for lab in labels])),
        raw_boxes=float(raw_counts.mean()),
        kept_boxes=float(np.mean([len(b) for b in kept])))
    queries = np.array([i for i, lab in enumerate(labels) if lab.size], dtype=np.int64)
    candidates = np.arange(len(images))
    if 'scene_type' in images[0]:
        knn = oracle_knn(np.array([im['scene_type'] for im in images]), k, seed)
        res = category_precision(labels, knn, queries, candidates=candidates)
        out['knn_oracle'] = res[f'category_precision@{k}']
    else:  # version 1 has no scene types: only the random level
        knn = None
        res = category_precision(labels, np.zeros((len(images), 1), np.int64), queries, candidates=candidates)
    out['knn_random'] = res['category_precision_random']

    rng = np.random.default_rng(seed)
    num_kept = sum(len(b) for b in kept)
    counts = dict.fromkeys([
        'on_iou', 'on_inside', 'on_inside_box', 'on_any', 'holds', 'background', 'on_iou_random', 'on_inside_random',
        'on_inside_box_random'
    ], 0)
    hit = hit_random = num_gt = with_masks = 0
    masks: Dict[str, List[np.ndarray]] = {c: [] for c in OBJECT_CRITERIA}
    for b, g, lab, im in zip(kept, gt, labels, images):
        segms = [a.get('segmentation') for a in by_image[im['id']]]
        obj = object_masks(segms if all(segms) else None, im['height'], im['width'])
        with_masks += obj is not None
        on = {c: on_object(b, g, c, 0.5, obj).any(axis=1) for c in OBJECT_CRITERIA}
        on['inside_box'] = on_object(b, g, 'inside').any(axis=1)
        holds = (on_object_reverse(b, g) >= 0.5).any(axis=1)
        rand = random_placement(b, (im['width'], im['height']), rng)
        for c in ('iou', 'inside', 'inside_box'):
            counts[f'on_{c}'] += int(on[c].sum())
        on_any = on['iou'] | on['inside']  # on masks, IoU >= 0.5 no longer implies inside
        counts['on_any'] += int(on_any.sum())
        counts['holds'] += int((holds & ~on_any).sum())
        counts['background'] += int((~holds & ~on_any).sum())
        for c in OBJECT_CRITERIA:
            counts[f'on_{c}_random'] += int(on_object(rand, g, c, 0.5, obj).any(axis=1).sum())
            masks[c].append(matched_gt_labels(b, g, lab, 0.5, c, obj) if lab.size else np.zeros((len(b), 0), bool))
        counts['on_inside_box_random'] += int(on_object(rand, g, 'inside').any(axis=1).sum())
        h, n = gt_recall(b, g)
        hit, num_gt = hit + h, num_gt + n
        hit_random += gt_recall(rand, g)[0]
    out.update({f'kept_{k_}': v / num_kept for k_, v in counts.items()})
    out['inside_rule_masks'] = with_masks / len(images)
    out['recall_kept'] = hit / max(num_gt, 1)
    out['recall_kept_random'] = hit_random / max(num_gt, 1)
    if knn is not None:
        num_cls = 1 + max(int(lab.max()) for lab in labels if lab.size)
        for c, s in (('iou', ''), ('inside', '_inside')):
            m = [np.pad(x, ((0, 0), (0, num_cls - x.shape[1]))).astype(np.float64) for x in masks[c]]
            obj = corr = 0.0
            for i in queries:
                for j in knn[i]:
                    if len(m[i]) and len(m[j]):
                        obj += m[i].any(1).mean() * m[j].any(1).mean()
                        corr += ((m[i] @ m[j].T) > 0).mean()
            pairs = len(queries) * k
            out[f'oracle_pair_object_rate{s}_random'] = obj / pairs
            out[f'oracle_pair_precision_on_objects{s}_random'] = corr / obj if obj else float('nan')
    return out


def on_object_reverse(boxes_xywh: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """``(B, G)``: the share of GT box g's area that lies inside box b."""
    from orl_plugin.evaluation.box_metrics import box_iou
    return box_iou(gt_xyxy, xywh_to_xyxy(boxes_xywh), mode='iof').T


COLUMNS = (('objects_per_image', 'obj/img', '{:.2f}'), ('knn_oracle', 'KNN oracle', '{:.3f}'),
           ('knn_random', 'KNN random', '{:.3f}'), ('kept_boxes', 'kept/img', '{:.1f}'),
           ('kept_on_iou', 'on obj IoU (rnd)', None), ('kept_on_inside', 'inside obj (rnd)', None),
           ('kept_on_inside_box', 'inside obj box rule (rnd)', None), ('kept_holds', 'holds obj', '{:.3f}'),
           ('kept_background', 'background', '{:.3f}'), ('oracle_pair_object_rate_random', 'rnd obj-pair IoU',
                                                         '{:.3f}'), ('oracle_pair_object_rate_inside_random',
                                                                     'rnd obj-pair inside', '{:.3f}'),
           ('oracle_pair_precision_on_objects_inside_random', 'rnd same-cat of obj-pairs inside', '{:.3f}'))


def table(results: Dict[str, Dict[str, float]]) -> str:
    """One markdown row per design (on-object shares beside their random level)."""
    head = ['design'] + [c[1] for c in COLUMNS]
    rows = [head, ['---'] * len(head)]
    for name, r in results.items():
        row = [name]
        for key, _, fmt in COLUMNS:
            if fmt is None:  # a share beside its random-placement level
                row.append(f'{r[key]:.3f} ({r[key + "_random"]:.3f})')
            else:
                row.append(fmt.format(r[key]) if key in r else '-')
        rows.append(row)
    return '\n'.join('| ' + ' | '.join(map(str, row)) + ' |' for row in rows)


def main(argv: Optional[List[str]] = None) -> int:
    """Measure every design not measured before with these settings; write ``results.json``, print the table."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    res_path = osp.join(args.out, 'results.json')
    saved: Dict[str, Any] = {}
    if osp.isfile(res_path) and not args.fresh:
        with open(res_path) as f:
            saved = json.load(f)
    settings = dict(
        num_images=args.num_images,
        img_size=args.img_size,
        seed=args.seed,
        k=args.k,
        filter=FILTER_CFG,
        inside_rule='masks where the scenes have them')
    if saved.get('settings') != settings:
        saved = dict(settings=settings, designs={})
    for name in args.designs:
        if name in saved['designs']:
            print(f'[premise] {name}: done before, kept', flush=True)
            continue
        t0 = time.time()
        data = osp.join(args.out, 'scenes', name.replace('/', '_per_'))
        summary = make_synthetic_scenes(
            data,
            args.num_images,
            seed=args.seed,
            img_size=(args.img_size, args.img_size),
            val_fraction=0.0,
            workers=1,
            **DESIGNS[name])
        fig = measure(summary['ann_file'], summary['image_dir'], args.k, args.seed, args.workers)
        saved['designs'][name] = dict(options=DESIGNS[name], **fig, elapsed_s=round(time.time() - t0, 1))
        atomic_write_json(res_path, saved)
        print(f'[premise] {name}: {time.time() - t0:.0f} s', flush=True)
    shown = {n: saved['designs'][n] for n in args.designs}
    print(f'{args.num_images} scenes of {args.img_size} px per design, seed {args.seed}; '
          f'ORL box filter {FILTER_CFG}; (rnd) = the same boxes placed at random; '
          "'inside obj' on the objects' masks where the scenes have them (not v1), 'box rule' on their boxes")
    print(table(shown))
    print(f'-> {res_path}')
    return 0
