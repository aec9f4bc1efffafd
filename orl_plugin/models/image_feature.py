"""``ImageFeature``: stage 2a's image embedding, read from any mmpretrain stage-1 model."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .feature_utils import backbone_outputs, check_interface, has_projector, pool_last, preprocess

FEATURES = ('auto', 'neck', 'backbone')


@MODELS.register_module()
class ImageFeature:
    """One L2-normalised embedding per image for the KNN retrieval of stage 2a.

    ORL's feature is BYOL's projector output (online backbone, global average pool, projector;
    256-d at paper settings). For other stage-1 models the rule (``feature='auto'``) is:

    - a self-supervised model (mmpretrain ``BaseSelfSupervisor``: BYOL, MoCo v2, SimCLR,
      SimSiam, DenseCL, ORL, ...) with a neck: the projector output,
      ``model.neck(model.extract_feat(x))[0]`` (DenseCL's neck returns its global projection
      first, then the dense ones: the global one is taken);
    - otherwise (a classifier, whose ``GlobalAveragePooling`` neck is no projector, or a model
      without neck): the pooled backbone feature (``feature_utils.pool_last``: global average
      pool of a feature map; a ViT's class token or mean patch token as its ``out_type`` says).

    The images are prepared by the model's own ``data_preprocessor``.

    Args:
        feature (str): ``'auto'`` (the rule above), ``'neck'`` (the projector; an error for a
            model without one) or ``'backbone'`` (the pooled backbone feature, no projector).
    """

    def __init__(self, feature: str = 'auto') -> None:
        if feature not in FEATURES:
            raise ValueError(f'feature must be one of {FEATURES}, got {feature!r}')
        self.feature = feature

    def uses_projector(self, model: torch.nn.Module) -> bool:
        """Whether ``model``'s embedding goes through its projector (raises for 'neck' without)."""
        if self.feature == 'backbone':
            return False
        if self.feature == 'neck' and not has_projector(model):
            raise AttributeError(f"ImageFeature(feature='neck') needs a self-supervised model with a projector "
                                 f"(neck); {type(model).__name__} has none (a classifier's pooling neck is no "
                                 "projector): use feature='auto' or 'backbone'")
        return has_projector(model)

    def modules(self, model: torch.nn.Module) -> Tuple[str, ...]:
        """The model parts the embedding reads (their weights must come from the checkpoint)."""
        return ('backbone', 'neck') if self.uses_projector(model) else ('backbone', )

    def check(self, model: torch.nn.Module) -> None:
        """Raise a clear error unless ``model`` has the interface this feature reads."""
        check_interface(model, ('data_preprocessor', 'extract_feat') + self.modules(model),
                        f'ImageFeature(feature={self.feature!r})')

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, data: dict) -> torch.Tensor:
        """``(N, D)`` float32 L2-normalised embeddings of a collated batch ``data``."""
        feats = backbone_outputs(model, preprocess(model, data))
        if self.uses_projector(model):
            x = model.neck(feats)[0]
        else:
            x = pool_last(feats, model.backbone)
        return F.normalize(x.float(), dim=1)

    def __repr__(self) -> str:
        return f'ImageFeature(feature={self.feature!r})'
