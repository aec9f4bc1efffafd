"""How stage 2 reads features from a stage-1 model: only through its public interface.

Shared by the stage-2 feature components (:class:`~.image_feature.ImageFeature`, :class:`~.roi_feature.RoIFeature`).
The stage-1 model is any mmpretrain model with a ``data_preprocessor`` (called as a module: the channel order and the
normalisation of training), ``extract_feat`` (a classifier's with ``stage='backbone'``) and, for 2a, a ``neck`` when
it has a projector (self-supervised models).
"""
from __future__ import annotations

import inspect
from typing import Any, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup.base import BaseSelfSupervisor


def preprocess(model: torch.nn.Module, data: dict) -> torch.Tensor:
    """``model.data_preprocessor(data, False)``'s inputs as one float batch on the model's device.

    ``data`` is a collated batch (``{'inputs': ..., 'data_samples': ...}``). A self-supervised
    preprocessor returns a list of views; stage 2 feeds one view per image.
    """
    inputs = model.data_preprocessor(data, False)['inputs']
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise ValueError(f'stage-2 features need one view per image, got {len(inputs)}')
        inputs = inputs[0]
    return inputs if inputs.is_floating_point() else inputs.float()


def backbone_outputs(model: torch.nn.Module, inputs: torch.Tensor) -> Any:
    """The backbone outputs through ``extract_feat`` (a classifier's ``stage='backbone'``)."""
    if 'stage' in inspect.signature(model.extract_feat).parameters:
        return model.extract_feat(inputs, stage='backbone')
    return model.extract_feat(inputs)


def pool_last(outputs: Any, backbone: torch.nn.Module) -> torch.Tensor:
    """The pooled backbone feature ``(N, C)``: the backbone's **last** output, one vector per image.

    - ``(N, C, H, W)`` feature map (ResNet, a ViT with ``out_type='featmap'``): global average pool;
    - ``(N, C)`` (a ViT with ``out_type='cls_token'``, mmpretrain's default, or ``'avg_featmap'``): as it is,
      so the ViT's own ``out_type`` chooses the class token or the mean patch token;
    - ``(N, L, C)`` tokens (a ViT with ``out_type='raw'``): the mean of the patch tokens (those after the
      backbone's ``num_extra_tokens`` class/register tokens).
    """
    x = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{type(backbone).__name__} returned {type(x).__name__} as its last '
                        'output; stage 2 needs a tensor (N, C, H, W), (N, C) or (N, L, C)')
    if x.dim() == 4:
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    if x.dim() == 3:
        return x[:, int(getattr(backbone, 'num_extra_tokens', 0)):].mean(dim=1)
    if x.dim() == 2:
        return x
    raise ValueError(f'{type(backbone).__name__} gave a last output of shape '
                     f'{tuple(x.shape)}; stage 2 pools (N, C, H, W), (N, L, C) or (N, C)')


def has_projector(model: torch.nn.Module) -> bool:
    """A self-supervised model's neck is its projector; a classifier's neck (a pooling layer,
    e.g. ``GlobalAveragePooling``) is not."""
    return isinstance(model, BaseSelfSupervisor) and getattr(model, 'neck', None) is not None


def check_interface(model: torch.nn.Module, names: Sequence[str], who: str) -> None:
    """Raise a clear error when ``model`` lacks a public attribute a component reads."""
    missing = [n for n in names if getattr(model, n, None) is None]
    if missing:
        raise AttributeError(f'{who} needs a model with {", ".join(names)} (an mmpretrain '
                             f'self-supervised model or classifier); {type(model).__name__} has '
                             f'no {", ".join(missing)}')


def checkpoint_keys(model: torch.nn.Module, modules: Sequence[str]) -> List[Tuple[str, tuple]]:
    """``(key, shape)`` of every weight and BN statistic of ``modules`` in a checkpoint of
    ``model`` (BN's ``num_batches_tracked`` counters are left out: features do not use them)."""
    out = []
    for name in modules:
        for k, v in getattr(model, name).state_dict().items():
            if not k.endswith('num_batches_tracked'):
                out.append((f'{name}.{k}', tuple(v.shape)))
    return out
