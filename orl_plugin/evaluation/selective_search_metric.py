"""``SelectiveSearchMetric``: write the stage-2b proposals store and score proposal recall."""
from typing import List, Optional, Tuple

import numpy as np
from mmengine.logging import print_log
from mmpretrain.registry import METRICS

from orl_plugin.datasets.transforms.box_filter import filter_boxes
from orl_plugin.store import write_selective_search_store

from .box_metrics import OBJECT_CRITERIA, gt_recall, object_masks, on_object
from .mining_metric import MiningMetric


def random_placement(boxes_xywh: np.ndarray, img_wh: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The same boxes (same number, same sizes) at uniformly random positions inside the image:
    the chance level of proposal figures. Sizes larger than the image are clipped to it."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    img_w, img_h = float(img_wh[0]), float(img_wh[1])
    w, h = np.minimum(b[:, 2], img_w), np.minimum(b[:, 3], img_h)
    x = rng.random(len(b)) * (img_w - w)
    y = rng.random(len(b)) * (img_h - h)
    return np.stack([x, y, w, h], axis=1)


@METRICS.register_module()
class SelectiveSearchMetric(MiningMetric):
    """Gather raw proposals from every rank, write ``selective_search.orlstore``, score them.

    Skipped (unreadable) images get no boxes and are listed in the store header.
    With ground truth, reports the recall of GT boxes at ``iou_thr`` by the raw boxes
    (``recall@{thr}_raw``) and by the boxes the correspondence step keeps (ORL's filter,
    ``filter_cfg``; ``recall@{thr}_filtered``), the mean box counts, and the share of the kept boxes
    that lie on an object (``filtered_object_rate``: IoU >= ``iou_thr`` with a GT box;
    ``filtered_object_rate_inside``: the object's pixels in the box over the box's area >=
    ``inside_thr``, on its mask where the data set gives ``gt_masks``, else on its box;
    ``inside_rule_masks``: the share of the scored images that had masks).
    Each of those figures has its chance level ``*_random``: the same figure for the same boxes
    (same number, same sizes) placed at uniformly random positions in their image
    (:func:`random_placement`, seeded by ``seed`` and the image index, so it repeats run to run).

    Args:
        out_file (str): Output store (``<data_root>/orl/selective_search.orlstore``).
        json_file (str, optional): Also write the official ``{"bbox": [...]}`` JSON.
        iou_thr (float): IoU for a GT box to count as recalled.
        filter_cfg (dict): ``filter_boxes`` arguments (ORL: min_size 96, max_ratio 3,
            max_iou 0.5, topk 100; scale ``min_size`` with the image size on small images).
        inside_thr (float): Intersection over box area for a box to lie inside an object.
        seed (int): Seed of the random placements.
    """

    result_keys = ('proposals', 'width', 'height')
    default_prefix = 'selective_search'

    def __init__(self,
                 out_file: str,
                 json_file: Optional[str] = None,
                 iou_thr: float = 0.5,
                 filter_cfg: Optional[dict] = None,
                 inside_thr: float = 0.5,
                 seed: int = 0,
                 **kwargs) -> None:
        super().__init__(out_file=out_file, json_file=json_file, **kwargs)
        self.iou_thr = iou_thr
        self.inside_thr = inside_thr
        self.seed = int(seed)
        self.filter_cfg = dict(min_size=96, max_ratio=3.0, max_iou=0.5, topk=100)
        self.filter_cfg.update(filter_cfg or {})

    def compute_metrics(self, results: List[dict]) -> dict:
        results = self.ordered(results)
        boxes = [
            np.zeros(
                (0, 4), np.int32) if self.is_skipped(r) else np.asarray(r['proposals'], dtype=np.int32).reshape(-1, 4)
            for r in results
        ]
        names, ids = self.image_list(results)
        skipped = self.skipped_list(results)
        path = write_selective_search_store(
            self.out_file,
            boxes,
            file_names=names,
            image_ids=ids,
            params=dict(method='opencv_selective_search'),
            provenance=self.provenance(),
            skipped=skipped)
        json_path = self.write_json(path)
        print_log(
            f'selective search: {len(results)} images, {len(skipped)} skipped, '
            f'{sum(len(b) for b in boxes)} boxes -> {path}' + (f' and {json_path}' if json_path else ''),
            logger='current')

        valid = [i for i, r in enumerate(results) if not self.is_skipped(r)]
        metrics = dict(num_images=len(results), num_skipped=len(skipped))
        if valid:
            metrics['mean_raw_boxes'] = float(np.mean([len(boxes[i]) for i in valid]))
        with_gt = [i for i in valid if len(np.asarray(results[i].get('gt_bboxes', []))) > 0]
        if with_gt:
            metrics.update(self._score(results, boxes, with_gt))
        else:
            self.note_no_ground_truth('proposal recall')
        return metrics

    def _score(self, results: List[dict], boxes: List[np.ndarray], with_gt: List[int]) -> dict:
        """Recall and kept-box object rates of the images with GT, each beside its random level."""
        thr = {'iou': self.iou_thr, 'inside': self.inside_thr}
        names = {'iou': 'filtered_object_rate', 'inside': 'filtered_object_rate_inside'}
        counts = dict.fromkeys(['raw', 'filtered', 'raw_random', 'filtered_random'], 0)
        on = dict.fromkeys([*names.values(), *(f'{v}_random' for v in names.values())], 0)
        num_gt = num_kept = with_masks = 0
        for i in with_gt:
            gt = np.asarray(results[i]['gt_bboxes'], dtype=np.float32).reshape(-1, 4)
            filt = filter_boxes(boxes[i], **self.filter_cfg)
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i]))
            img_wh = self._image_size(results[i], boxes[i], gt)
            rand = dict(raw=random_placement(boxes[i], img_wh, rng), filtered=random_placement(filt, img_wh, rng))
            for kind, b in (('raw', boxes[i]), ('filtered', filt), ('raw_random', rand['raw']), ('filtered_random',
                                                                                                 rand['filtered'])):
                counts[kind] += gt_recall(b, gt, self.iou_thr)[0]
            masks = object_masks(results[i].get('gt_masks'), img_wh[1], img_wh[0])
            with_masks += masks is not None
            for crit in OBJECT_CRITERIA:
                on[names[crit]] += int(on_object(filt, gt, crit, thr[crit], masks).any(axis=1).sum())
                on[f'{names[crit]}_random'] += int(
                    on_object(rand['filtered'], gt, crit, thr[crit], masks).any(axis=1).sum())
            num_gt += len(gt)
            num_kept += len(filt)
        t = f'{self.iou_thr:g}'
        out = {f'recall@{t}_{kind}': hits / num_gt for kind, hits in counts.items()}
        out.update({k: v / max(num_kept, 1) for k, v in on.items()})
        out.update(
            mean_filtered_boxes=num_kept / len(with_gt), num_gt=num_gt, inside_rule_masks=with_masks / len(with_gt))
        return out

    @staticmethod
    def _image_size(result: dict, boxes: np.ndarray, gt_xyxy: np.ndarray) -> Tuple[int, int]:
        """``(w, h)`` from the annotation, else the extent of the proposals and GT boxes."""
        if result.get('width') and result.get('height'):
            return int(result['width']), int(result['height'])
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ext = np.concatenate([b[:, :2] + b[:, 2:], gt_xyxy[:, 2:]]) if len(b) else gt_xyxy[:, 2:]
        return int(np.ceil(ext[:, 0].max())), int(np.ceil(ext[:, 1].max()))
