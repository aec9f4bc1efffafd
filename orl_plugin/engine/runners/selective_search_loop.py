"""``SelectiveSearchLoop``: stage 2b, raw selective-search proposals for every image."""
from typing import Any, List

import cv2
import numpy as np
from mmpretrain.registry import LOOPS

from .mining_loop import MiningLoop


@LOOPS.register_module()
class SelectiveSearchLoop(MiningLoop):
    """Collect ``proposals`` (int32 ``(B, 4)`` xywh, OpenCV order) for every image.

    The proposals are normally computed in the data-loader workers by the ``SelectiveSearch``
    transform (so ``num_workers`` processes run OpenCV in parallel); this loop only gathers
    them. If the pipeline does not compute them (no ``SelectiveSearch`` transform), the
    runner's model, a ``SelectiveSearchProposer``, computes them from ``img`` in this process.
    The data loader must use ``collate_fn=dict(type='pseudo_collate')`` (boxes are ragged).
    """

    step_name = 'selective_search'

    def fingerprint(self) -> dict:
        # OpenCV's segmentation code decides the boxes; a new OpenCV may change them.
        proposer = self.model.extra_repr() if hasattr(self.model, 'propose') else None
        return dict(super().fingerprint(), opencv=cv2.__version__, proposer=proposer)

    def process_batch(self, data_batch: Any) -> List[dict]:
        if not isinstance(data_batch, dict):
            raise TypeError('SelectiveSearchLoop needs dict batches: set '
                            "collate_fn=dict(type='pseudo_collate') in test_dataloader")
        if 'proposals' in data_batch:
            proposals = data_batch['proposals']
        elif 'img' in data_batch and hasattr(self.model, 'propose'):
            proposals = self.model.propose(data_batch['img'])
        else:
            raise KeyError('no proposals in the batch: add the SelectiveSearch transform to the '
                           'test pipeline, or keep img and use model=dict(type='
                           "'SelectiveSearchProposer')")
        return [dict(proposals=np.asarray(p, dtype=np.int32).reshape(-1, 4)) for p in proposals]
