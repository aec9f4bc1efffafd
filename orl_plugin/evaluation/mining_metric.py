"""``MiningMetric``: the metric-side base of the stage-2 steps (gather, order, write, score).

``MiningLoop`` feeds one dict per image (``index`` + step fields + data-set info). A subclass
lists the step fields it keeps in ``result_keys`` and implements ``compute_metrics``, starting
with ``results = self.ordered(results)`` (sorted by ``index``, every index exactly once), then
writes its store with ``self.image_list``, ``self.skipped_list`` and ``self.provenance``.
"""
import os.path as osp
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from orl_plugin.store import MiningStore, write_official_json

COMMON_KEYS = ('index', 'skipped', 'skip_reason', 'img_path', 'file_name', 'img_id', 'width', 'height', 'gt_bboxes',
               'gt_labels', 'gt_masks')


class MiningMetric(BaseMetric):
    """Base of the mining metrics.

    Args:
        out_file (str): Output native store directory (``*.orlstore``).
        json_file (str, optional): Also write the official ORL JSON here.
        json_meta (bool): Add the ``orl_plugin`` key (provenance, skipped images) to the JSON;
            the official code ignores it.
        collect_device, collect_dir, prefix: as mmengine's ``BaseMetric``.
    """

    result_keys: Tuple[str, ...] = ()

    def __init__(self,
                 out_file: str,
                 json_file: Optional[str] = None,
                 json_meta: bool = True,
                 collect_device: str = 'cpu',
                 collect_dir: Optional[str] = None,
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if not out_file:
            raise ValueError(f'{type(self).__name__}: out_file (the output store path) is required')
        self.out_file = out_file
        self.json_file = json_file
        self.json_meta = json_meta
        # Filled by MiningLoop before evaluate(): checkpoint, config, cache key.
        self.mining_provenance: dict = {}

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        keep = COMMON_KEYS + tuple(self.result_keys)
        for s in data_samples:
            if 'index' not in s:
                raise KeyError(f'{type(self).__name__} got a result without index; it must be '
                               'fed by a MiningLoop')
            self.results.append({k: s[k] for k in keep if k in s})

    @staticmethod
    def ordered(results: List[dict]) -> List[dict]:
        """Results sorted by ``index``; raises unless indices are exactly ``0..N-1``."""
        results = sorted(results, key=lambda r: int(r['index']))
        idx = np.array([int(r['index']) for r in results], dtype=np.int64)
        if not np.array_equal(idx, np.arange(len(results))):
            dup = np.flatnonzero(np.diff(idx) == 0)
            missing = np.setdiff1d(np.arange(idx.max() + 1 if idx.size else 0), idx)
            raise RuntimeError(f'gathered mining results are not one per image: duplicated '
                               f'indices {idx[dup][:10].tolist()}, missing {missing[:10].tolist()}')
        return results

    @staticmethod
    def is_skipped(r: dict) -> bool:
        return bool(r.get('skipped', False))

    @staticmethod
    def image_list(results: List[dict]) -> Tuple[List[str], np.ndarray]:
        """File names (as in the annotation file) and image ids, in index order."""
        names = [str(r.get('file_name') or osp.basename(str(r.get('img_path', '')))) for r in results]
        ids = np.array([int(r.get('img_id', r['index'])) for r in results], dtype=np.int64)
        return names, ids

    @classmethod
    def skipped_list(cls, results: List[dict]) -> List[dict]:
        names, _ = cls.image_list(results)
        return [
            dict(index=int(r['index']), file_name=names[i], reason=str(r.get('skip_reason', '')))
            for i, r in enumerate(results) if cls.is_skipped(r)
        ]

    def note_no_ground_truth(self, scores: str) -> None:
        """Say once, in one line, that the scores needing ground truth are off (a folder of photos)."""
        print_log(
            f'{self.default_prefix}: no image has ground-truth boxes, so {scores} is not scored '
            '(it needs a COCO-format annotation file)',
            logger='current')

    def provenance(self) -> dict:
        return dict(metric=type(self).__name__, **self.mining_provenance)

    def write_json(self, store_path: str) -> Optional[str]:
        """Write the official JSON of the store just written, if ``json_file`` is set."""
        if not self.json_file:
            return None
        return write_official_json(MiningStore.open(store_path), self.json_file, include_meta=self.json_meta)
