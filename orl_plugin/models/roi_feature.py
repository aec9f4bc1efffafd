"""``RoIFeature``: stage 2c's per-box embedding, read from any mmpretrain stage-1 model."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .feature_utils import backbone_outputs, check_interface, pool_last, preprocess


@MODELS.register_module()
class RoIFeature:
    """L2-normalised embeddings of box crops for the RoI pair retrieval of stage 2c.

    The official feature (``Correspondence.forward_test``): each box cropped and resized
    (``CropBoxes`` in the data pipeline), normalised, online backbone, global average pool,
    L2-normalised; the projector is not used. From any stage-1 model: the model's own
    ``data_preprocessor`` (channel order, normalisation), ``extract_feat`` and the pooled
    backbone feature of ``feature_utils.pool_last`` (global average pool of a feature map; a
    ViT's class token or mean patch token, as its ``out_type`` says).

    Args:
        pad_single (bool): Run a batch of one crop as two copies of it. CPU convolution kernels
            for batch 1 round differently (about 1e-6) from the batched ones, which agree with
            each other, so this keeps every embedding independent of how crops were grouped
            (and so the pairs of a resumed or multi-rank run identical). Default True.
    """

    def __init__(self, pad_single: bool = True) -> None:
        self.pad_single = bool(pad_single)

    def modules(self, model: torch.nn.Module) -> Tuple[str, ...]:
        """The model parts the embedding reads (their weights must come from the checkpoint)."""
        return ('backbone', )

    def check(self, model: torch.nn.Module) -> None:
        """Raise a clear error unless ``model`` has the interface this feature reads."""
        check_interface(model, ('data_preprocessor', 'extract_feat', 'backbone'), 'RoIFeature')

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, crops: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """Embed ``(M, H, W, 3)`` uint8 crops (the loader's channel order), ``batch_size`` per
        forward, on the model's device (eval mode expected). Returns ``(M, D)`` float32."""
        device = next(model.parameters()).device
        out = []
        for s in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[s:s + batch_size]))
            single = self.pad_single and x.size(0) == 1
            if single:
                x = x.expand(2, *x.shape[1:])
            x = preprocess(model, dict(inputs=x.permute(0, 3, 1, 2), data_samples=None))
            # Crops arrive HWC: feed them channels-last, the layout this step has always used.
            # Convolution kernels round differently per layout (~1e-7), which can flip near-tied
            # pairs; one fixed layout keeps embeddings and pairs bit-identical run to run.
            x = x.contiguous(memory_format=torch.channels_last)
            feat = F.normalize(pool_last(backbone_outputs(model, x), model.backbone), dim=1)
            out.append(feat[:1] if single else feat)
        if not out:
            return torch.zeros((0, 0), device=device)
        return torch.cat(out, dim=0)

    def __repr__(self) -> str:
        return f'RoIFeature(pad_single={self.pad_single})'
