"""``ContrastiveObjective``: a stage-3 branch loss in the MoCo v2 form (InfoNCE against a queue)."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import all_gather
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from .branch_encoders import BranchEncoders


@MODELS.register_module()
class ContrastiveObjective(BaseModule):
    """MoCo v2 on one ORL branch: the online projection of one view (query) must pick the momentum
    target's projection of the other view (its key) out of a queue of this branch's earlier keys.

    The loss is mmpretrain's ``ContrastiveHead`` (cross-entropy over ``[q.k+, q.queue] / T``).
    Keys are gathered from every rank before they are enqueued, as mmpretrain's ``MoCo`` does, so
    N ranks of batch B fill the queue as one rank of batch N * B would. Unlike mmpretrain's, the
    queue length need not be a multiple of the batch: writes wrap around.

    Args:
        feat_dim (int): Projector output size (the neck's ``out_channels``). Defaults to 128.
        queue_len (int): Negative keys kept per branch. Defaults to 65536 (MoCo v2).
        temperature (float): InfoNCE temperature. Defaults to 0.2 (MoCo v2).
        symmetric (bool): Both view orders (``q1 -> k2`` and ``q2 -> k1``, summed; both key sets
            enqueued), like the paper's symmetric BYOL branches; False is MoCo v2's single order
            (half the forwards). Defaults to True.
        loss (dict): The classification loss of ``ContrastiveHead``.
        init_cfg (dict, optional): As ``BaseModule``.
    """

    def __init__(self,
                 feat_dim: int = 128,
                 queue_len: int = 65536,
                 temperature: float = 0.2,
                 symmetric: bool = True,
                 loss: dict = dict(type='CrossEntropyLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if queue_len < 1:
            raise ValueError(f'ContrastiveObjective: queue_len must be >= 1, got {queue_len}')
        self.feat_dim = feat_dim
        self.queue_len = queue_len
        self.symmetric = symmetric
        self.head = MODELS.build(dict(type='ContrastiveHead', loss=loss, temperature=temperature))
        self.register_buffer('queue', F.normalize(torch.randn(feat_dim, queue_len), dim=0))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    def info_nce(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """InfoNCE of L2-normalised ``(N, D)`` queries against their keys and the queue."""
        pos = torch.einsum('nc,nc->n', query, key).unsqueeze(-1)
        neg = torch.einsum('nc,ck->nk', query, self.queue.clone().detach())
        return self.head.loss(pos, neg)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``(N, D)`` keys (already gathered) at the pointer, wrapping at the end, as N
        writes one after another would (of more keys than slots, the last ``queue_len`` stay)."""
        num, ptr = keys.size(0), int(self.queue_ptr)
        dropped = max(0, num - self.queue_len)
        idx = (ptr + dropped + torch.arange(num - dropped, device=keys.device)) % self.queue_len
        self.queue[:, idx] = keys[dropped:].t().to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + num) % self.queue_len

    def branch_loss(self, encoders: BranchEncoders, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """InfoNCE of the branch's two view batches; the keys join the queue afterwards."""
        q1 = F.normalize(encoders.online(view1), dim=1)
        q2 = F.normalize(encoders.online(view2), dim=1) if self.symmetric else None
        k1 = F.normalize(encoders.target(view1), dim=1) if self.symmetric else None
        k2 = F.normalize(encoders.target(view2), dim=1)
        loss = self.info_nce(q1, k2)
        keys: List[torch.Tensor] = [k2]
        if self.symmetric:
            loss = loss + self.info_nce(q2, k1)
            keys = [k1, k2]
        # per key set, so that ranks' keys land in the order of one rank's concatenated batch
        self.enqueue(torch.cat([torch.cat(all_gather(k), dim=0) for k in keys], dim=0))
        return loss
