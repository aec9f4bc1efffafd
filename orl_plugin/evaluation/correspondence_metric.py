"""``CorrespondenceMetric``: gather stage-2c results, write ``correspondence.orlstore``, score."""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.logging import print_log

from mmpretrain.registry import METRICS

from orl_plugin.store import write_correspondence_store
from .box_metrics import matched_gt_labels
from .mining_metric import MiningMetric

#: The official correspondence JSON's ``info`` fields, in its order.
OFFICIAL_INFO_KEYS = ('bbox_min_size', 'bbox_max_aspect_ratio', 'bbox_max_iou',
                      'intra_bbox_num', 'knn_image_num', 'knn_bbox_pair_ratio')


def pair_precision(pairs: Sequence[Sequence[np.ndarray]],
                   knn: np.ndarray,
                   gt_bboxes: Sequence[Optional[np.ndarray]],
                   gt_labels: Sequence[Optional[np.ndarray]],
                   iou_thr: float = 0.5,
                   kept_boxes: Optional[Sequence[np.ndarray]] = None) -> Dict[str, float]:
    """How often a mined RoI pair shows the same kind of object in both images.

    A pair ``[q xywh, n xywh]`` of query ``i`` and neighbour ``knn[i, j]`` is correct when the
    query box matches (IoU >= ``iou_thr``) a GT object of some category and the neighbour box
    matches a GT object of the same category. Only pairs whose two images both have ground
    truth (``gt_bboxes`` not ``None``; an image with an empty list counts, its pairs are wrong)
    are scored.

    With ``kept_boxes`` (the boxes the pairs were chosen from) it also gives the same two figures
    for pairs drawn uniformly at random from those boxes, as many per neighbour as were mined
    (``*_random``, exact expectations): the level the similarity ranking has to beat.

    Returns:
        ``pair_precision`` (category-correct pairs / scored pairs), ``pair_object_rate``
        (pairs whose two boxes each match any GT object), ``scored_pairs`` and, with
        ``kept_boxes``, ``pair_precision_random`` and ``pair_object_rate_random``; empty when no
        pair could be scored.
    """
    n = len(pairs)
    has_gt = [gt_bboxes[i] is not None and gt_labels[i] is not None for i in range(n)]
    num_cls = 0
    for i in range(n):
        if has_gt[i] and len(gt_labels[i]):
            num_cls = max(num_cls, int(np.max(gt_labels[i])) + 1)
    correct = objects = scored = 0
    rand_correct = rand_objects = 0.0
    all_masks: Dict[int, np.ndarray] = {}

    def masks_of(i: int) -> np.ndarray:
        if i not in all_masks:
            all_masks[i] = _pad(matched_gt_labels(np.asarray(kept_boxes[i]).reshape(-1, 4), gt_bboxes[i],
                                                  gt_labels[i], iou_thr), num_cls)
        return all_masks[i]

    for i in range(n):
        if not has_gt[i]:
            continue
        for j, p in enumerate(pairs[i]):
            nb = int(knn[i, j])
            if len(p) == 0 or not has_gt[nb]:
                continue
            mq = _pad(matched_gt_labels(p[:, :4], gt_bboxes[i], gt_labels[i], iou_thr), num_cls)
            mn = _pad(matched_gt_labels(p[:, 4:], gt_bboxes[nb], gt_labels[nb], iou_thr),
                      num_cls)
            correct += int((mq & mn).any(axis=1).sum())
            objects += int((mq.any(axis=1) & mn.any(axis=1)).sum())
            scored += len(p)
            if kept_boxes is not None:
                aq, an = masks_of(i).astype(np.int64), masks_of(nb).astype(np.int64)
                if len(aq) and len(an):
                    rand_correct += len(p) * float(((aq @ an.T) > 0).mean())
                    rand_objects += len(p) * float(aq.any(axis=1).mean() * an.any(axis=1).mean())
    if scored == 0:
        return {}
    out = dict(pair_precision=correct / scored, pair_object_rate=objects / scored, scored_pairs=scored)
    if kept_boxes is not None:
        out.update(pair_precision_random=rand_correct / scored, pair_object_rate_random=rand_objects / scored)
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
    :func:`pair_precision` (with the random-pair level) plus counts.

    Args:
        out_file (str): Output store (``<data_root>/orl/correspondence.orlstore``).
        json_file (str, optional): Also write the official correspondence JSON.
        iou_thr (float): IoU for a box to match a GT object. Default 0.5.
        mining_params (dict, optional): The official ``info`` fields; the loop sets them from
            its pipeline and arguments (:meth:`set_mining_params`), so configs leave this out.
    """

    result_keys = ('kept_boxes', 'knn', 'pairs', 'pair_counts')
    default_prefix = 'correspondence'

    def __init__(self,
                 out_file: str,
                 json_file: Optional[str] = None,
                 iou_thr: float = 0.5,
                 mining_params: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(out_file=out_file, json_file=json_file, **kwargs)
        self.iou_thr = float(iou_thr)
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
                raise RuntimeError(
                    f'correspondence result of image {i} ({r.get("file_name", "")}) has '
                    f'{len(kn)} neighbours, {len(counts)} pair counts summing to '
                    f'{int(counts.sum())} and {len(flat)} pairs; expected {k} neighbours')
            knn[i] = kn
            boxes.append(np.asarray(r['kept_boxes']).reshape(-1, 4))
            pairs.append(np.split(flat, np.cumsum(counts)[:-1]))

        names, ids = self.image_list(results)
        skipped = self.skipped_list(results)
        path = write_correspondence_store(
            self.out_file, boxes, knn, pairs, file_names=names, image_ids=ids, params=params,
            provenance=self.provenance(), skipped=skipped)
        json_path = self.write_json(path)
        num_pairs = int(sum(len(p) for row in pairs for p in row))
        num_boxes = int(sum(len(b) for b in boxes))
        print_log(f'correspondence: {n} images, {len(skipped)} skipped, {num_boxes} kept boxes, '
                  f'{num_pairs} RoI pairs -> {path}' + (f' and {json_path}' if json_path else ''),
                  logger='current')

        metrics = dict(num_images=n, num_skipped=len(skipped), num_pairs=num_pairs,
                       mean_kept_boxes=num_boxes / max(n - len(skipped), 1))
        gt_b = [r.get('gt_bboxes') for r in results]
        gt_l = [r.get('gt_labels') for r in results]
        gt_b = [None if b is None else np.asarray(b, dtype=np.float32).reshape(-1, 4)
                for b in gt_b]
        gt_l = [None if lab is None else np.asarray(lab, dtype=np.int64).reshape(-1)
                for lab in gt_l]
        metrics.update(pair_precision(pairs, knn, gt_b, gt_l, self.iou_thr, kept_boxes=boxes))
        if all(b is None for b in gt_b):
            self.note_no_ground_truth('pair precision')
        return metrics
