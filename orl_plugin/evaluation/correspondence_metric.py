"""``CorrespondenceMetric``: gather stage-2c results, write ``correspondence.orlstore``, score."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log
from mmpretrain.registry import METRICS

from orl_plugin.store import write_correspondence_store

from .box_metrics import matched_gt_labels, object_masks
from .mining_metric import MiningMetric

#: The official correspondence JSON's ``info`` fields, in its order.
OFFICIAL_INFO_KEYS = ('bbox_min_size', 'bbox_max_aspect_ratio', 'bbox_max_iou', 'intra_bbox_num', 'knn_image_num',
                      'knn_bbox_pair_ratio')

#: Key suffix of each object criterion (:data:`box_metrics.OBJECT_CRITERIA`) in the pair figures.
CRITERION_SUFFIX = {'iou': '', 'inside': '_inside'}


def pair_precision(pairs: Sequence[Sequence[np.ndarray]],
                   knn: np.ndarray,
                   gt_bboxes: Sequence[Optional[np.ndarray]],
                   gt_labels: Sequence[Optional[np.ndarray]],
                   iou_thr: float = 0.5,
                   kept_boxes: Optional[Sequence[np.ndarray]] = None,
                   inside_thr: float = 0.5,
                   gt_masks: Optional[Sequence[Optional[list]]] = None,
                   img_sizes: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> Dict[str, float]:
    """How often a mined RoI pair shows the same kind of object in both images.

    A box is *on an object* by either of two criteria (:func:`box_metrics.on_object`): IoU >=
    ``iou_thr`` with a GT box (keys without suffix), or lying mostly inside a GT object, the
    object's pixels in the box over the box's area >= ``inside_thr`` (keys ending in ``_inside``;
    ORL's boxes are often object parts, which IoU misses). The pixels are those of the object's
    visible mask where the image has ``gt_masks`` (COCO segmentations aligned with its GT boxes;
    ``img_sizes`` ``(height, width)`` rasterise polygons), else of its GT box (the box rule).
    A pair ``[q xywh, n xywh]`` of query ``i`` and neighbour ``knn[i, j]`` is an *object pair*
    when both boxes are on objects, and *correct* when they are on objects of a common category.
    Only pairs whose two images both have ground truth (``gt_bboxes`` not ``None``; an image with
    an empty list counts, its pairs are wrong) are scored.

    Per criterion (``s`` = its suffix):

    - ``pair_precision{s}``: correct pairs / scored pairs;
    - ``pair_object_rate{s}``: object pairs / scored pairs;
    - ``pair_precision_on_objects{s}``: correct pairs / object pairs, i.e. among pairs with an
      object on both sides, the share whose objects share the category (is the matching right
      where it matches objects?); NaN without object pairs;
    - ``object_pairs{s}``: the number of object pairs (that share's sample size).

    With ``kept_boxes`` (the boxes the pairs were chosen from) every figure also gets its random
    level ``*_random``: for pairs drawn uniformly at random from the two images' kept boxes, as
    many per neighbour as were mined, the exact expected count of correct / object pairs; the
    ``_on_objects`` level is the ratio of those two expected counts (the share among all random
    pairs pooled, as the mined figure is pooled). Also ``kept_object_rate{s}``: the share of the
    kept boxes of the scored images that lie on an object. ``inside_rule_masks``: the share of
    the images with ground truth whose ``_inside`` figures used masks (1.0: the mask rule
    throughout, 0.0: the box rule throughout).

    Each image's boxes (its kept boxes, its side of its own pairs and of the pairs that have it
    as neighbour) are matched in one go, so its masks are decoded once and never all kept.

    Returns:
        The figures above and ``scored_pairs``; empty when no pair could be scored.
    """
    n = len(pairs)
    has_gt = [gt_bboxes[i] is not None and gt_labels[i] is not None for i in range(n)]
    num_cls = 0
    for i in range(n):
        if has_gt[i] and len(gt_labels[i]):
            num_cls = max(num_cls, int(np.max(gt_labels[i])) + 1)
    thr = dict(iou=iou_thr, inside=inside_thr)
    # The box sets to match on each image: ('kept', i), ('q', i, j) and ('n', k, j) (the neighbour
    # side of query k's pairs with neighbour slot j, which shows image knn[k, j]).
    wanted: Dict[int, List[Tuple[tuple, np.ndarray]]] = {i: [] for i in range(n) if has_gt[i]}
    scored_slots = []
    for i in wanted:
        if kept_boxes is not None:
            wanted[i].append((('kept', i), np.asarray(kept_boxes[i]).reshape(-1, 4)))
        for j, p in enumerate(pairs[i]):
            nb = int(knn[i, j])
            if len(p) and has_gt[nb]:
                scored_slots.append((i, j, nb, len(p)))
                wanted[i].append((('q', i, j), p[:, :4]))
                wanted[nb].append((('n', i, j), p[:, 4:]))
    match: Dict[str, Dict[tuple, np.ndarray]] = {c: {} for c in thr}
    with_masks = 0
    for i, parts in wanted.items():
        masks = None
        if gt_masks is not None and gt_masks[i] is not None:
            hw = img_sizes[i] if img_sizes is not None and img_sizes[i] is not None else (None, None)
            masks = object_masks(gt_masks[i], *hw)
            with_masks += 1
        if not parts:
            continue
        boxes = np.concatenate([b for _, b in parts])
        splits = np.cumsum([len(b) for _, b in parts])[:-1]
        for crit, t in thr.items():
            m = _pad(matched_gt_labels(boxes, gt_bboxes[i], gt_labels[i], t, crit, masks), num_cls)
            match[crit].update(zip((key for key, _ in parts), np.split(m, splits)))
    if not scored_slots:
        return {}
    scored = sum(c for *_, c in scored_slots)
    out: Dict[str, float] = dict(scored_pairs=scored, inside_rule_masks=with_masks / len(wanted))
    for crit, s in CRITERION_SUFFIX.items():
        mt = match[crit]
        correct = objects = 0
        rand_correct = rand_objects = 0.0
        for i, j, nb, count in scored_slots:
            mq, mn = mt['q', i, j], mt['n', i, j]
            correct += int((mq & mn).any(axis=1).sum())
            objects += int((mq.any(axis=1) & mn.any(axis=1)).sum())
            if kept_boxes is not None:
                aq, an = mt['kept', i].astype(np.int64), mt['kept', nb].astype(np.int64)
                if len(aq) and len(an):
                    rand_correct += count * float(((aq @ an.T) > 0).mean())
                    rand_objects += count * float(aq.any(axis=1).mean() * an.any(axis=1).mean())
        out[f'pair_precision{s}'] = correct / scored
        out[f'pair_object_rate{s}'] = objects / scored
        out[f'pair_precision_on_objects{s}'] = correct / objects if objects else float('nan')
        out[f'object_pairs{s}'] = objects
        if kept_boxes is not None:
            out[f'pair_precision{s}_random'] = rand_correct / scored
            out[f'pair_object_rate{s}_random'] = rand_objects / scored
            out[f'pair_precision_on_objects{s}_random'] = (
                rand_correct / rand_objects if rand_objects else float('nan'))
            on = [mt['kept', i].any(axis=1) for i in wanted]
            num_kept = sum(len(m) for m in on)
            out[f'kept_object_rate{s}'] = sum(int(m.sum()) for m in on) / num_kept if num_kept else float('nan')
    return out


def _pad(mask: np.ndarray, num_cls: int) -> np.ndarray:
    out = np.zeros((mask.shape[0], num_cls), dtype=bool)
    out[:, :mask.shape[1]] = mask
    return out


@METRICS.register_module()
class CorrespondenceMetric(MiningMetric):
    """Write the mined RoI pairs of stage 2c and report their quality.

    Fed by ``CorrespondenceLoop`` (one result per query image: ``kept_boxes``, ``knn``,
    ``pairs`` and ``pair_counts``). Writes ``out_file`` (a correspondence store: kept boxes,
    neighbours, pairs per neighbour slot; the official ``info`` fields as its params), and the
    official correspondence JSON when ``json_file`` is set. Skipped images keep their
    neighbour list but have no boxes and no pairs (and pairs with them as neighbour are
    empty); they are listed in the header. With ground truth it reports
    :func:`pair_precision` for both object criteria, each figure beside its random-pair level,
    plus counts.

    Args:
        out_file (str): Output store (``<data_root>/orl/correspondence.orlstore``).
        json_file (str, optional): Also write the official correspondence JSON.
        iou_thr (float): IoU for a box to match a GT object. Default 0.5.
        inside_thr (float): The object's pixels in a box over the box's area for the box to lie
            inside a GT object (the ``*_inside`` figures; the object's mask where the data set
            gives ``gt_masks``, else its box; ``inside_rule_masks`` says which). Default 0.5.
        mining_params (dict, optional): The official ``info`` fields; the loop sets them from
            its pipeline and arguments (:meth:`set_mining_params`), so configs leave this out.
    """

    result_keys = ('kept_boxes', 'knn', 'pairs', 'pair_counts')
    default_prefix = 'correspondence'

    def __init__(self,
                 out_file: str,
                 json_file: Optional[str] = None,
                 iou_thr: float = 0.5,
                 inside_thr: float = 0.5,
                 mining_params: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(out_file=out_file, json_file=json_file, **kwargs)
        self.iou_thr = float(iou_thr)
        self.inside_thr = float(inside_thr)
        self.mining_params = dict(mining_params) if mining_params else None

    def set_mining_params(self, params: dict) -> None:
        """Record the filter / pair parameters that go into the output's ``info``."""
        self.mining_params = dict(params)

    def compute_metrics(self, results: List[dict]) -> dict:
        results = self.ordered(results)
        n = len(results)
        if self.mining_params is None:
            raise RuntimeError('CorrespondenceMetric: mining parameters unknown; it must be fed '
                               'by CorrespondenceLoop or given mining_params')
        params = {k: self.mining_params[k] for k in OFFICIAL_INFO_KEYS if k in self.mining_params}
        params.update({k: v for k, v in self.mining_params.items() if k not in params})
        k = len(results[0]['knn']) if n else 0
        boxes, pairs = [], []
        knn = np.zeros((n, k), dtype=np.int64)
        for i, r in enumerate(results):
            kn = np.asarray(r['knn'], dtype=np.int64).reshape(-1)
            counts = np.asarray(r['pair_counts'], dtype=np.int64).reshape(-1)
            flat = np.asarray(r['pairs']).reshape(-1, 8)
            if len(kn) != k or len(counts) != k or counts.sum() != len(flat):
                raise RuntimeError(f'correspondence result of image {i} ({r.get("file_name", "")}) has '
                                   f'{len(kn)} neighbours, {len(counts)} pair counts summing to '
                                   f'{int(counts.sum())} and {len(flat)} pairs; expected {k} neighbours')
            knn[i] = kn
            boxes.append(np.asarray(r['kept_boxes']).reshape(-1, 4))
            pairs.append(np.split(flat, np.cumsum(counts)[:-1]))

        names, ids = self.image_list(results)
        skipped = self.skipped_list(results)
        path = write_correspondence_store(
            self.out_file,
            boxes,
            knn,
            pairs,
            file_names=names,
            image_ids=ids,
            params=params,
            provenance=self.provenance(),
            skipped=skipped)
        json_path = self.write_json(path)
        num_pairs = int(sum(len(p) for row in pairs for p in row))
        num_boxes = int(sum(len(b) for b in boxes))
        print_log(
            f'correspondence: {n} images, {len(skipped)} skipped, {num_boxes} kept boxes, '
            f'{num_pairs} RoI pairs -> {path}' + (f' and {json_path}' if json_path else ''),
            logger='current')

        metrics = dict(
            num_images=n,
            num_skipped=len(skipped),
            num_pairs=num_pairs,
            mean_kept_boxes=num_boxes / max(n - len(skipped), 1))
        gt_b = [r.get('gt_bboxes') for r in results]
        gt_l = [r.get('gt_labels') for r in results]
        gt_b = [None if b is None else np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in gt_b]
        gt_l = [None if lab is None else np.asarray(lab, dtype=np.int64).reshape(-1) for lab in gt_l]
        metrics.update(
            pair_precision(
                pairs,
                knn,
                gt_b,
                gt_l,
                self.iou_thr,
                kept_boxes=boxes,
                inside_thr=self.inside_thr,
                gt_masks=[r.get('gt_masks') for r in results],
                img_sizes=[(r['height'], r['width']) if r.get('height') and r.get('width') else None for r in results]))
        if all(b is None for b in gt_b):
            self.note_no_ground_truth('pair precision')
        return metrics
