"""``BYOLObjective``: the paper's stage-3 branch loss (predictor, EMA target, ``2 - 2 cos``)."""
import torch
from mmpretrain.models.heads import LatentPredictHead
from mmpretrain.registry import MODELS

from .branch_encoders import BranchEncoders


@MODELS.register_module()
class BYOLObjective(LatentPredictHead):
    """BYOL on one ORL branch: each view's online projection, through this branch's predictor,
    regresses the target projection of the other view; the two orders are summed.

    It is mmpretrain's ``LatentPredictHead`` (same arguments, same weights under the same keys)
    with the branch rule added, so the paper's configs, which give ``ORL`` a
    ``LatentPredictHead``, build this class and keep their checkpoints' layout. With
    ``CosineSimilarityLoss(shift_factor=2, scale_factor=2)`` each order is the paper's
    ``2 - 2 cos``.
    """

    def branch_loss(self, encoders: BranchEncoders, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The symmetric BYOL loss of one branch's two view batches."""
        online1 = encoders.online(view1)
        online2 = encoders.online(view2)
        target1 = encoders.target(view1)
        target2 = encoders.target(view2)
        return self.loss(online1, target2) + self.loss(online2, target1)
