"""ORL stage 3: object-level BYOL on image views, intra-RoI and inter-RoI
patches."""
import copy
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


@MODELS.register_module()
class ORL(BaseSelfSupervisor):
    """ORL: Unsupervised Object-Level Representation Learning from Scene
    Images (Xie et al., NeurIPS 2021), stage 3.

    One online network (``backbone`` + ``neck``, the projector) and its EMA
    target, shared by three BYOL branches, each with its own predictor head:
    the image level (two views of the query image), intra-RoI (a box and its
    jittered copy) and inter-RoI (a box of the query and its retrieved
    counterpart in a neighbour image). Each view is a separate forward pass,
    so batch-norm statistics are computed per branch and per view, as in the
    official implementation.

    With heads using ``CosineSimilarityLoss(shift_factor=2, scale_factor=2)``
    every branch loss is the paper's ``2 - 2 cos`` summed over both view
    orders: the same value as the stage-1 configs' mmpretrain ``BYOL``, which
    doubles the sum of two ``CosineSimilarityLoss(1, 1)`` terms.

    Args:
        backbone (dict): Backbone config.
        neck (dict): Projector config.
        head (dict): Global (image-level) ``LatentPredictHead`` config.
        intra_head (dict, optional): Intra-RoI head; a copy of ``head`` (with
            its own weights) when None.
        inter_head (dict, optional): Inter-RoI head; a copy of ``head`` when
            None.
        base_momentum (float): Start of the target momentum in mmpretrain's
            ``CosineEMA`` convention ``avg = (1 - m) * avg + m * online``:
            the paper's 0.99 -> 1 is ``base_momentum=0.01``,
            ``end_momentum=0``.
        end_momentum (float): End of the cosine schedule. Defaults to 0.
        global_loss_weight (float): Weight of the image-level loss.
        intra_loss_weight (float): Weight of the intra-RoI loss.
        inter_loss_weight (float): Weight of the inter-RoI loss.
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
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.intra_head = MODELS.build(copy.deepcopy(head) if intra_head is None else intra_head)
        self.inter_head = MODELS.build(copy.deepcopy(head) if inter_head is None else inter_head)
        self.global_loss_weight = global_loss_weight
        self.intra_loss_weight = intra_loss_weight
        self.inter_loss_weight = inter_loss_weight

        # The target network: EMA of the online backbone + projector.
        self.target_net = CosineEMA(
            nn.Sequential(self.backbone, self.neck), momentum=base_momentum, end_momentum=end_momentum)

    def _online(self, view: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(view))[0]

    def _byol_loss(self, head: nn.Module, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Symmetric BYOL loss of one branch: each view predicts the target
        projection of the other."""
        online1 = self._online(view1)
        online2 = self._online(view2)
        with torch.no_grad():
            target1 = self.target_net(view1)[0]
            target2 = self.target_net(view2)[0]
        return head.loss(online1, target2) + head.loss(online2, target1)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        """The three ORL losses.

        Args:
            inputs (list[Tensor]): Six view batches, in the order
                ``ORLViews`` packs them: two image views, two intra-RoI
                patches, two inter-RoI patches.
            data_samples (list[DataSample]): Unused.

        Returns:
            dict[str, Tensor]: ``loss_global``, ``loss_intra``,
            ``loss_inter`` (summed by the optimiser wrapper, logged apart).
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 6:
            got = f'{len(inputs)} views' if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError('ORL expects a list of 6 view batches (two '
                             'image views, two intra-RoI and two inter-RoI '
                             f'patches, as ORLViews packs them), got {got}')
        img_v1, img_v2, intra_v1, intra_v2, inter_v1, inter_v2 = inputs

        # One EMA step per iteration, before the target forwards (as BYOL).
        with torch.no_grad():
            self.target_net.update_parameters(nn.Sequential(self.backbone, self.neck))

        return dict(
            loss_global=self.global_loss_weight * self._byol_loss(self.head, img_v1, img_v2),
            loss_intra=self.intra_loss_weight * self._byol_loss(self.intra_head, intra_v1, intra_v2),
            loss_inter=self.inter_loss_weight * self._byol_loss(self.inter_head, inter_v1, inter_v2))
