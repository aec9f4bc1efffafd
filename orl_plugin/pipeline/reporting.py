"""The end of a run as a person reads it: a table, ``summary.json`` and pictures of what stage 2 mined.

``make demo`` (``projects/synthetic_demo/run_demo.py``) and ``orl-pipeline folder`` end with
:func:`write_report`. Rows that need ground truth (object probe, KNN category precision, proposal
recall, pair precision) are shown when the run had any; without it (a folder of photos) one row says
they are off, and the label-free figures take their place (view-feature rank, what was mined).
"""
from __future__ import annotations

import os.path as osp
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..store import MiningStore, atomic_write_json

SUMMARY_JSON = 'summary.json'
# Photos are drawn with their long side at most this: 1-px boxes vanish in a 4000-px PNG.
MAX_DRAW_SIDE = 1024
# Scores that need ground truth, as summary.json keys.
GT_KEYS = ('stage1_object_probe_top1', 'knn_category_precision', 'proposal_recall_raw', 'correspondence_pair_precision')
MAX_NAMED = 20  # unreadable files named in the table (summary.json lists every one)


def metric(stage: Optional[Mapping[str, Any]], *names: str) -> Optional[float]:
    """The first of ``names`` found in a stage record's metrics (names differ by prefix only)."""
    for n in names:
        v = (stage or {}).get('metrics', {}).get(n)
        if v is not None:
            return v
    return None


def _store(stages: Mapping[str, Any], stage: str) -> Optional[MiningStore]:
    path = (stages.get(stage) or {}).get('outputs', {}).get('store')
    return MiningStore.open(path) if path else None


def skipped_images(stages: Mapping[str, Any]) -> List[dict]:
    """Every image a mining stage skipped as unreadable, once, in image order, with its reason (the
    path the stage read it from, which may be a link, left out of the reason)."""
    seen: Dict[int, dict] = {}
    for stage in ('selective_search', 'knn', 'correspondence'):
        store = _store(stages, stage)
        for s in (store.skipped if store is not None else []):
            name, reason = s['file_name'], str(s.get('reason', ''))
            head, sep, tail = reason.partition(f'{name}: ')
            seen.setdefault(
                int(s['index']), dict(index=int(s['index']), file_name=name, reason=tail if sep else reason))
    return [seen[i] for i in sorted(seen)]


def example_indices(corr: MiningStore, count: int) -> List[int]:
    """The first ``count`` images with kept boxes and RoI pairs with their nearest neighbour."""
    skipped = {int(s['index']) for s in corr.skipped}
    out = []
    for i in range(corr.num_images):
        if len(out) == count:
            break
        if i not in skipped and corr.num_boxes(i) and corr.num_pairs(i, 0):
            out.append(i)
    return out


def _read(file_name: str, roots: Sequence[str]) -> np.ndarray:
    """An image as the stages decode it (PIL, EXIF orientation ignored), so the boxes line up."""
    from ..datasets.transforms.loading import decode_image
    from ..visualization.drawing import find_image
    path = find_image(file_name, roots)
    with open(path, 'rb') as f:
        return decode_image(f.read(), path)


def _fit(img: np.ndarray, max_side: int) -> Tuple[np.ndarray, float]:
    """``img`` scaled down to ``max_side`` (long side) and the scale; unchanged when it fits."""
    import cv2
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return img, s


def draw_examples(stages: Mapping[str, Any],
                  out_dir: str,
                  image_roots: Sequence[str],
                  gt: Optional[Mapping[int, np.ndarray]] = None,
                  count: int = 3,
                  max_side: int = MAX_DRAW_SIDE) -> List[str]:
    """PNGs for the first ``count`` images that have mined pairs: the raw selective-search boxes
    (2b) with the boxes 2c kept after ORL's filter and the ground truth (``gt``: xywh by image id,
    if known), and the RoI pairs mined with the nearest neighbour. Nothing without 2b and 2c."""
    from ..visualization.drawing import draw_pairs, draw_proposals, save_image
    ss, corr = _store(stages, 'selective_search'), _store(stages, 'correspondence')
    if ss is None or corr is None:
        return []
    paths = []
    for i in example_indices(corr, count):
        img, s = _fit(_read(ss.file_name(i), image_roots), max_side)
        gt_i = gt.get(int(ss.image_ids[i])) if gt else None
        vis = draw_proposals(img, ss.boxes(i) * s, corr.boxes(i) * s, None if gt_i is None else gt_i * s, max_raw=60)
        paths.append(save_image(vis, osp.join(out_dir, f'proposals_{i:03d}.png')))
        nb = int(corr.knn(i)[0])
        nimg, ns = _fit(_read(corr.file_name(nb), image_roots), max_side)
        pairs = corr.pairs(i, 0) * np.repeat([s, ns], 4)
        vis = draw_pairs(
            img, nimg, pairs, query_boxes=corr.boxes(i) * s, neighbour_boxes=corr.boxes(nb) * ns, title=f'{i} -> {nb}')
        paths.append(save_image(vis, osp.join(out_dir, f'pairs_{i:03d}_nn0_{nb:03d}.png')))
    return paths


def build_summary(pipeline_summary: Mapping[str, Any], *, data: Mapping[str, Any], schedule: Mapping[str, int],
                  cfg_options: Sequence[str], images: Sequence[str], wall_time_s: float,
                  wall_time_pipeline_s: float) -> Dict[str, Any]:
    """What ``summary.json`` holds: the run's checkpoints, every quality figure (``None`` where the
    run could not measure it), the unreadable images and each stage's record."""
    st = pipeline_summary['stages']

    def checkpoint(stage: str) -> Optional[str]:
        return (st.get(stage) or {}).get('outputs', {}).get('checkpoint')

    s1, knn, ss, corr, ft = (st.get(s) for s in ('stage1', 'knn', 'selective_search', 'correspondence', 'finetune'))
    corr_store = _store(st, 'correspondence')  # counts from the store: mmengine logs integer metrics as null
    result = {
        'wall_time_s': round(wall_time_s, 1),
        'wall_time_pipeline_s': round(wall_time_pipeline_s, 1),
        'stages_ran': [s for s, r in st.items() if not r.get('skipped')],
        'data': dict(data),
        'schedule': dict(schedule),
        'cfg_options': list(cfg_options),
        'stage1_checkpoint': checkpoint('stage1'),
        'stage3_checkpoint': checkpoint('stage3'),
        'detector_checkpoint': checkpoint('finetune'),
        'stage1_object_probe_top1': metric(s1, 'val/probe/object_knn_top1'),
        'stage1_object_probe_top1_at_init': metric(s1, 'val/probe/object_knn_top1_init'),
        'stage1_view_retrieval_top1': metric(s1, 'val/probe/view_top1'),
        'stage1_view_retrieval_top1_at_init': metric(s1, 'val/probe/view_top1_init'),
        'stage1_view_retrieval_chance': metric(s1, 'val/probe/view_chance'),
        'stage1_view_feature_rank': metric(s1, 'val/probe/view_rank'),
        'stage1_view_feature_rank_at_init': metric(s1, 'val/probe/view_rank_init'),
        'knn_category_precision': metric(knn, 'knn/category_precision@10'),
        'knn_category_precision_at_1': metric(knn, 'knn/category_precision@1'),
        'knn_category_precision_random_neighbour': metric(knn, 'knn/category_precision_random'),
        'proposal_recall_raw': metric(ss, 'selective_search/recall@0.5_raw'),
        'proposal_recall_filtered': metric(ss, 'selective_search/recall@0.5_filtered'),
        'correspondence_pair_precision': metric(corr, 'correspondence/pair_precision'),
        'correspondence_pair_precision_random': metric(corr, 'correspondence/pair_precision_random'),
        'correspondence_pair_object_rate': metric(corr, 'correspondence/pair_object_rate'),
        'correspondence_pair_object_rate_random': metric(corr, 'correspondence/pair_object_rate_random'),
        'finetune_bbox_mAP': metric(ft, 'val/coco/bbox_mAP', 'coco/bbox_mAP'),
        'finetune_bbox_mAP_50': metric(ft, 'val/coco/bbox_mAP_50', 'coco/bbox_mAP_50'),
        'mean_raw_boxes': metric(ss, 'selective_search/mean_raw_boxes'),
        'mean_kept_boxes': metric(corr, 'correspondence/mean_kept_boxes'),
        'num_pairs': corr_store.total_pairs if corr_store is not None else None,
        'skipped_images': skipped_images(st),
        'stages': {
            s: dict(
                skipped=r.get('skipped'),
                wall_s=r.get('wall_s'),
                cpu_s=r.get('cpu_s'),
                log=r.get('log'),
                outputs=r.get('outputs'),
                metrics=r.get('metrics')) for s, r in st.items()
        },
        'images': list(images),
    }
    result['ground_truth'] = any(result[k] is not None for k in GT_KEYS)
    return result


def _f(v: Any, digits: int = 3) -> str:
    return '-' if v is None else (f'{v:.{digits}f}' if isinstance(v, float) else str(v))


def summary_rows(result: Mapping[str, Any],
                 data_line: str,
                 out_dir: str,
                 view_images: str = 'held-out') -> List[Tuple[str, str]]:
    """The table's rows (label, value); ``view_images`` names the images view retrieval used."""
    r = result
    rows = [('data', data_line)]
    bad = r['skipped_images']
    if bad:
        named = '; '.join(f'{b["file_name"]}: {b["reason"]}' for b in bad[:MAX_NAMED])
        more = f'; and {len(bad) - MAX_NAMED} more (summary.json)' if len(bad) > MAX_NAMED else ''
        rows.append(('unreadable images (skipped)', f'{len(bad)}: {named}{more}'))
    rows.append(('stage-1 checkpoint', _f(r['stage1_checkpoint'])))
    gt = r['ground_truth']
    if gt:
        rows.append(('stage-1 object kNN probe top-1', f"{_f(r['stage1_object_probe_top1'])} "
                     f"(random init: {_f(r['stage1_object_probe_top1_at_init'])})"))
    rows.append((f'stage-1 {view_images} view retrieval top-1',
                 f"{_f(r['stage1_view_retrieval_top1'])} (random init: {_f(r['stage1_view_retrieval_top1_at_init'])}, "
                 f"chance: {_f(r['stage1_view_retrieval_chance'])})"))
    if gt:
        rows += [
            ('KNN category precision@10', f"{_f(r['knn_category_precision'])} "
             f"(random neighbour: {_f(r['knn_category_precision_random_neighbour'])})"),
            ('proposal recall@0.5 raw / kept', f"{_f(r['proposal_recall_raw'])} / {_f(r['proposal_recall_filtered'])}"),
            ('pair precision (same category)', f"{_f(r['correspondence_pair_precision'])} "
             f"(random pairs of the same boxes: {_f(r['correspondence_pair_precision_random'])})"),
        ]
    else:
        rows += [
            ('stage-1 view feature rank', f"{_f(r['stage1_view_feature_rank'], 1)} "
             f"(random init: {_f(r['stage1_view_feature_rank_at_init'], 1)}; falling towards 1 = collapse)"),
            ('mined per image', f"{_f(r['mean_raw_boxes'], 1)} raw boxes, {_f(r['mean_kept_boxes'], 1)} kept; "
             f"{_f(r['num_pairs'])} RoI pairs in all"),
            ('scores needing ground truth', 'off (no annotations): object probe, KNN category precision, '
             'proposal recall, pair precision'),
        ]
    rows.append(('stage-3 checkpoint', _f(r['stage3_checkpoint'])))
    if 'finetune' in r['stages']:
        rows.append(
            ('fine-tuned bbox mAP (val)', f"{_f(r['finetune_bbox_mAP'])} (mAP@0.5 {_f(r['finetune_bbox_mAP_50'])})"))
    rows += [
        ('pictures', f"{len(r['images'])} PNG in {out_dir}"),
        ('wall time', f"{r['wall_time_s']:.0f} s (stages run: {', '.join(r['stages_ran']) or 'none'})"),
    ]
    return rows


def format_rows(title: str, rows: Sequence[Tuple[str, str]], tag: str) -> str:
    width = max(len(k) for k, _ in rows)
    return '\n'.join([f'\n[{tag}] {title}'] + [f'  {k:<{width}}  {v}' for k, v in rows])


def write_report(pipeline_summary: Mapping[str, Any],
                 out_dir: str,
                 *,
                 title: str,
                 tag: str,
                 data: Mapping[str, Any],
                 data_line: str,
                 image_roots: Sequence[str],
                 started: float,
                 pipeline_wall_s: float,
                 schedule: Mapping[str, int],
                 cfg_options: Sequence[str],
                 gt_ann_files: Sequence[str] = (),
                 view_images: str = 'held-out') -> Dict[str, Any]:
    """Draw the examples into ``out_dir``, write ``out_dir/summary.json`` and print the table.

    ``started``: ``time.time()`` when the run began (the wall time counts until the report);
    ``pipeline_wall_s``: the pipeline's share of it.
    """
    from ..visualization.drawing import load_gt_boxes
    gt = load_gt_boxes(gt_ann_files) if gt_ann_files else None
    pngs = draw_examples(pipeline_summary['stages'], out_dir, image_roots, gt)
    result = build_summary(
        pipeline_summary,
        data=data,
        schedule=schedule,
        cfg_options=cfg_options,
        images=pngs,
        wall_time_s=time.time() - started,
        wall_time_pipeline_s=pipeline_wall_s)
    out = osp.join(out_dir, SUMMARY_JSON)
    atomic_write_json(out, result, indent=2)
    print(format_rows(title, summary_rows(result, data_line, out_dir, view_images), tag))
    print(f'[{tag}] summary: {out}', flush=True)
    return result


def folder_report(pipe: Any, pipeline_summary: Mapping[str, Any], started: float,
                  pipeline_wall_s: float) -> Dict[str, Any]:
    """:func:`write_report` for a run of a folder preset, into its work dir."""
    root = pipe.folder['root']
    ss = _store(pipeline_summary['stages'], 'selective_search')
    num = ss.num_images if ss is not None else pipe.folder['num_files']
    bad = len(skipped_images(pipeline_summary['stages']))
    data = dict(root=root, images=num, unreadable=bad, readable=num - bad)
    line = f'{num} images under {root}' + (f' ({bad} unreadable, skipped)' if bad else '')
    return write_report(
        pipeline_summary,
        pipe.work_dir,
        title=f'ORL on the images under {root} ({pipe.preset})',
        tag='pipeline',
        data=data,
        data_line=line,
        image_roots=[root],
        started=started,
        pipeline_wall_s=pipeline_wall_s,
        schedule=pipe.schedule,
        cfg_options=pipe.opts.cfg_options,
        view_images='training-image')
