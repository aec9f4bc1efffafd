"""``TopRatioPairs``: ORL's rule for the RoI pairs of a query image and one neighbour (2c)."""
from __future__ import annotations

import numpy as np
import torch
from mmpretrain.registry import MODELS


@MODELS.register_module()
class TopRatioPairs:
    """The official pair rule: the top ``max(1, int(ratio * B))`` entries of the flattened
    ``B x B'`` cosine-similarity matrix of the query's ``B`` and the neighbour's ``B'`` box
    embeddings, in descending order. No threshold, no mutual check.

    Equal similarities go to the smaller flat index (a stable sort), so the order never depends
    on the top-k kernel.

    Args:
        ratio (float): ``knn_bbox_pair_ratio``, in (0, 1]. Default 0.1 (the paper).
    """

    def __init__(self, ratio: float = 0.1) -> None:
        if not 0 < ratio <= 1:
            raise ValueError(f'the pair ratio (topk_bbox_ratio) must be in (0, 1], got {ratio}')
        self.ratio = float(ratio)

    def num_pairs(self, num_query_boxes: int) -> int:
        """Pairs kept per neighbour: ``max(1, int(ratio * B))``, the official expression."""
        k = int(self.ratio * num_query_boxes)
        return k if k > 0 else 1

    def __call__(self, emb_q: torch.Tensor, emb_n: torch.Tensor, boxes_q: np.ndarray,
                 boxes_n: np.ndarray) -> np.ndarray:
        """``(P, 8)`` int32 pairs ``[q xywh, n xywh]`` from L2-normalised ``(B, D)`` and
        ``(B', D)`` embeddings and the ``(B, 4)`` / ``(B', 4)`` boxes they belong to."""
        sim = torch.mm(emb_q, emb_n.t())
        k = min(self.num_pairs(sim.size(0)), sim.numel())
        order = torch.sort(sim.flatten(), descending=True, stable=True).indices[:k].cpu().numpy()
        qi, ni = order // sim.size(1), order % sim.size(1)
        return np.concatenate([boxes_q[qi], boxes_n[ni]], axis=1).astype(np.int32)

    def __repr__(self) -> str:
        return f'TopRatioPairs(ratio={self.ratio})'
