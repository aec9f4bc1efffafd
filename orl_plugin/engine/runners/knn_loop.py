"""``KNNMiningLoop``: stage 2a, one L2-normalised global embedding per image."""
from typing import Any, List

import torch
import torch.nn.functional as F

from mmpretrain.registry import LOOPS

from .mining_loop import MiningLoop


@LOOPS.register_module()
class KNNMiningLoop(MiningLoop):
    """Embed every image with the stage-1 BYOL model; ``KNNMetric`` then finds neighbours.

    ORL's image feature: online backbone -> global average pool -> projector (the BYOL neck,
    ``NonLinearNeck(with_avg_pool=True)``, 256-d) -> L2 normalisation, on Resize 256 +
    CenterCrop 224 views. The embeddings are cached per chunk, so a killed run resumes.

    Args:
        feature (str): ``'neck'`` (ORL: pooled backbone through the projector) or
            ``'backbone'`` (pooled last backbone stage, no projector).
        Other arguments: see ``MiningLoop``.
    """

    step_name = 'knn'

    def __init__(self, runner, dataloader, evaluator, feature: str = 'neck', **kwargs) -> None:
        if feature not in ('neck', 'backbone'):
            raise ValueError(f"feature must be 'neck' or 'backbone', got {feature!r}")
        self.feature = feature
        super().__init__(runner, dataloader, evaluator, **kwargs)

    def fingerprint(self) -> dict:
        return dict(super().fingerprint(), feature=self.feature)

    def before_mining(self) -> None:
        model = self.model
        for name in ('backbone', 'data_preprocessor') + (('neck', ) if self.feature == 'neck'
                                                          else ()):
            if getattr(model, name, None) is None:
                raise AttributeError(f'KNNMiningLoop(feature={self.feature!r}) needs a model with '
                                     f'a {name} (e.g. mmpretrain BYOL); '
                                     f'{type(model).__name__} has none')

    @torch.no_grad()
    def process_batch(self, data_batch: Any) -> List[dict]:
        model = self.model
        data = model.data_preprocessor(data_batch, False)
        inputs = data['inputs']
        # SelfSupDataPreprocessor returns a list of views; the KNN pipeline has one.
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'KNN features need one view per image, got {len(inputs)}')
            inputs = inputs[0]
        feats = model.backbone(inputs)
        if self.feature == 'neck':
            x = model.neck(feats)[0]
        else:
            x = F.adaptive_avg_pool2d(feats[-1], 1).flatten(1)
        x = F.normalize(x.float(), dim=1).cpu().numpy()
        return [dict(embedding=row.copy()) for row in x]
