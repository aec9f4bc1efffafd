"""ORL stage 3: one online network and its momentum target shared by three branches (image,
intra-RoI, inter-RoI), each with its own objective."""
import copy
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .objectives import BranchEncoders

#: The branches, in the order of ``ORLViews``' six view batches (two per branch).
BRANCHES = ('global', 'intra', 'inter')


def _build_objective(cfg: dict) -> nn.Module:
    """A branch objective; ``LatentPredictHead`` (the paper's configs) is built as its subclass
    ``BYOLObjective``, which adds the branch rule and keeps the weights' keys."""
    cfg = copy.deepcopy(cfg)
    if cfg.get('type') == 'LatentPredictHead':
        cfg['type'] = 'BYOLObjective'
    objective = MODELS.build(cfg)
    if not callable(getattr(objective, 'branch_loss', None)):
        raise TypeError(f'ORL: {type(objective).__name__} is not a branch objective: it needs a method '
                        '`branch_loss(encoders, view1, view2) -> Tensor` (see orl_plugin.models.objectives)')
    return objective


@MODELS.register_module()
class ORL(BaseSelfSupervisor):
    """ORL: Unsupervised Object-Level Representation Learning from Scene
    Images (Xie et al., NeurIPS 2021), stage 3.

    One online network (``backbone`` + ``neck``, the projector) and its momentum target (an EMA
    of both) serve three branches: the image level (two views of the query image), intra-RoI (a
    box and its jittered copy) and inter-RoI (a box of the query and its retrieved counterpart in
    a neighbour image). What a branch computes from its two views is its *objective*, a registered
    component with ``branch_loss(encoders, view1, view2)`` (``orl_plugin.models.objectives``):
    ``BYOLObjective`` (the paper; what a ``LatentPredictHead`` config builds) or
    ``ContrastiveObjective`` (MoCo v2's InfoNCE with a queue per branch). Each view is a separate
    forward pass, so batch-norm statistics are per branch and per view, as in the official code.

    Args:
        backbone (dict): Backbone config.
        neck (dict): Projector config.
        head (dict): Objective of the image-level branch.
        intra_head (dict, optional): Objective of the intra-RoI branch; a copy of ``head`` (own
            weights and state) when None.
        inter_head (dict, optional): Objective of the inter-RoI branch; a copy of ``head`` when
            None.
        base_momentum (float): Start of the target momentum in mmpretrain's ``CosineEMA``
            convention ``avg = (1 - m) * avg + m * online``: the paper's 0.99 -> 1 is
            ``base_momentum=0.01, end_momentum=0``; MoCo's constant 0.999 is ``0.001, 0.001``.
        end_momentum (float): End of the cosine schedule. Defaults to 0.
        global_loss_weight (float): Weight of the image-level loss.
        intra_loss_weight (float): Weight of the intra-RoI loss.
        inter_loss_weight (float): Weight of the inter-RoI loss. A weight of 0 switches its branch
            off: no objective is built, no view of it is forwarded, no loss is logged.
        pretrained, data_preprocessor, init_cfg: As ``BaseSelfSupervisor``.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 intra_head: Optional[dict] = None,
                 inter_head: Optional[dict] = None,
                 base_momentum: float = 0.01,
                 end_momentum: float = 0.0,
                 global_loss_weight: float = 1.0,
                 intra_loss_weight: float = 1.0,
                 inter_loss_weight: float = 1.0,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=None,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.global_loss_weight = global_loss_weight
        self.intra_loss_weight = intra_loss_weight
        self.inter_loss_weight = inter_loss_weight
        weights = (global_loss_weight, intra_loss_weight, inter_loss_weight)
        if not any(weights):
            raise ValueError('ORL: every branch is switched off (all loss weights are 0)')
        # Built in the order of the branches (the seed's parameter draws depend on it).
        configs = dict(head=head, intra_head=intra_head or head, inter_head=inter_head or head)
        for (attr, cfg), weight in zip(configs.items(), weights):
            setattr(self, attr, _build_objective(cfg) if weight else None)

        self.target_net = CosineEMA(
            nn.Sequential(self.backbone, self.neck), momentum=base_momentum, end_momentum=end_momentum)

    def _online(self, view: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(view))[0]

    @torch.no_grad()
    def _target(self, view: torch.Tensor) -> torch.Tensor:
        return self.target_net(view)[0]

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        """The branch losses.

        Args:
            inputs (list[Tensor]): Six view batches, in the order
                ``ORLViews`` packs them: two image views, two intra-RoI
                patches, two inter-RoI patches.
            data_samples (list[DataSample]): Unused.

        Returns:
            dict[str, Tensor]: ``loss_global``, ``loss_intra``,
            ``loss_inter`` of the branches that are on (summed by the
            optimiser wrapper, logged apart).
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 6:
            got = f'{len(inputs)} views' if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError('ORL expects a list of 6 view batches (two '
                             'image views, two intra-RoI and two inter-RoI '
                             f'patches, as ORLViews packs them), got {got}')

        # One momentum step per iteration, before any target forward (as BYOL and MoCo).
        with torch.no_grad():
            self.target_net.update_parameters(nn.Sequential(self.backbone, self.neck))

        encoders = BranchEncoders(online=self._online, target=self._target)
        objectives = (self.head, self.intra_head, self.inter_head)
        weights = (self.global_loss_weight, self.intra_loss_weight, self.inter_loss_weight)
        losses = {}
        for i, (name, objective, weight) in enumerate(zip(BRANCHES, objectives, weights)):
            if objective is None or not weight:
                continue
            losses[f'loss_{name}'] = weight * objective.branch_loss(encoders, inputs[2 * i], inputs[2 * i + 1])
        return losses
