"""``SelectiveSearchMetric``: write the stage-2b proposals store and score proposal recall."""
from typing import List, Optional

import numpy as np
from mmengine.logging import print_log

from mmpretrain.registry import METRICS

from orl_plugin.store import write_selective_search_store
from orl_plugin.datasets.transforms.box_filter import filter_boxes
from .box_metrics import gt_recall
from .mining_metric import MiningMetric


@METRICS.register_module()
class SelectiveSearchMetric(MiningMetric):
    """Gather raw proposals from every rank, write ``selective_search.orlstore``, score them.

    Skipped (unreadable) images get no boxes and are listed in the store header.
    With ground truth, reports the recall of GT boxes at ``iou_thr`` by the raw boxes and by
    the boxes the correspondence step keeps (ORL's filter, ``filter_cfg``), and the mean box
    counts.

    Args:
        out_file (str): Output store (``<data_root>/orl/selective_search.orlstore``).
        json_file (str, optional): Also write the official ``{"bbox": [...]}`` JSON.
        iou_thr (float): IoU for a GT box to count as recalled.
        filter_cfg (dict): ``filter_boxes`` arguments (ORL: min_size 96, max_ratio 3,
            max_iou 0.5, topk 100; scale ``min_size`` with the image size on small images).
    """

    result_keys = ('proposals', )
    default_prefix = 'selective_search'

    def __init__(self,
                 out_file: str,
                 json_file: Optional[str] = None,
                 iou_thr: float = 0.5,
                 filter_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(out_file=out_file, json_file=json_file, **kwargs)
        self.iou_thr = iou_thr
        self.filter_cfg = dict(min_size=96, max_ratio=3.0, max_iou=0.5, topk=100)
        self.filter_cfg.update(filter_cfg or {})

    def compute_metrics(self, results: List[dict]) -> dict:
        results = self.ordered(results)
        boxes = [np.zeros((0, 4), np.int32) if self.is_skipped(r) else
                 np.asarray(r['proposals'], dtype=np.int32).reshape(-1, 4) for r in results]
        names, ids = self.image_list(results)
        skipped = self.skipped_list(results)
        path = write_selective_search_store(
            self.out_file, boxes, file_names=names, image_ids=ids,
            params=dict(method='opencv_selective_search'),
            provenance=self.provenance(), skipped=skipped)
        json_path = self.write_json(path)
        print_log(f'selective search: {len(results)} images, {len(skipped)} skipped, '
                  f'{sum(len(b) for b in boxes)} boxes -> {path}'
                  + (f' and {json_path}' if json_path else ''), logger='current')

        valid = [i for i, r in enumerate(results) if not self.is_skipped(r)]
        metrics = dict(num_images=len(results), num_skipped=len(skipped))
        if valid:
            metrics['mean_raw_boxes'] = float(np.mean([len(boxes[i]) for i in valid]))
        with_gt = [i for i in valid if len(np.asarray(results[i].get('gt_bboxes', []))) > 0]
        if with_gt:
            hit_raw = hit_filt = num_gt = 0
            kept = []
            for i in with_gt:
                gt = results[i]['gt_bboxes']
                h, n = gt_recall(boxes[i], gt, self.iou_thr)
                filt = filter_boxes(boxes[i], **self.filter_cfg)
                hf, _ = gt_recall(filt, gt, self.iou_thr)
                hit_raw, hit_filt, num_gt = hit_raw + h, hit_filt + hf, num_gt + n
                kept.append(len(filt))
            thr = f'{self.iou_thr:g}'
            metrics[f'recall@{thr}_raw'] = hit_raw / num_gt
            metrics[f'recall@{thr}_filtered'] = hit_filt / num_gt
            metrics['mean_filtered_boxes'] = float(np.mean(kept))
            metrics['num_gt'] = num_gt
        else:
            self.note_no_ground_truth('proposal recall')
        return metrics
