"""``KNNMiningLoop``: stage 2a, one L2-normalised global embedding per image."""
from typing import Any, List, Tuple, Union

import torch
from mmpretrain.registry import LOOPS, MODELS

from .mining_loop import MiningLoop


@LOOPS.register_module()
class KNNMiningLoop(MiningLoop):
    """Embed every image with the stage-1 model; ``KNNMetric`` then finds the neighbours.

    The loop chunks, caches (a killed run resumes), distributes and feeds the metric; the
    embedding is the model-side component ``feature`` (``ImageFeature``: BYOL's projector
    output for ORL, and a rule for any other mmpretrain self-supervised model or classifier).
    ORL's views: Resize 256 + CenterCrop 224 in the test pipeline.

    Args:
        feature (str | dict): The image-feature component config, e.g.
            ``dict(type='ImageFeature', feature='auto')``; a string is the ``feature`` mode of
            ``ImageFeature`` (``'auto'``, ``'neck'``: the projector, ``'backbone'``: the pooled
            backbone feature). Default ``'auto'``.
        Other arguments: see ``MiningLoop``.
    """

    step_name = 'knn'

    def __init__(self, runner, dataloader, evaluator, feature: Union[str, dict] = 'auto', **kwargs) -> None:
        cfg = dict(type='ImageFeature', feature=feature) if isinstance(feature, str) else feature
        self.feature = MODELS.build(cfg)
        super().__init__(runner, dataloader, evaluator, **kwargs)

    def fingerprint(self) -> dict:
        return dict(super().fingerprint(), feature=repr(self.feature))

    def checkpoint_modules(self) -> Tuple[str, ...]:
        return self.feature.modules(self.model)

    def check_model(self) -> None:
        self.feature.check(self.model)

    def process_batch(self, data_batch: Any) -> List[dict]:
        with torch.no_grad():
            x = self.feature(self.model, data_batch).cpu().numpy()
        return [dict(embedding=row.copy()) for row in x]
