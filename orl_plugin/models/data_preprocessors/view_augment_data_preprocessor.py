"""GPU-side augmentation: the photometric part of every view pipeline, run batched in the data preprocessor."""
from collections import OrderedDict
from typing import List, Optional, Sequence, Union

import torch
from mmengine.dist import get_rank
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from .batch_augment import BatchViewAugment, cat_params


def _skip_loader_transforms(pipeline: Sequence, loader_transforms: Sequence[str]) -> list:
    """``pipeline`` without its leading transforms of the given types (the loader's crop)."""
    pipeline = list(pipeline)
    while pipeline and (pipeline[0].get('type')
                        if isinstance(pipeline[0], dict) else type(pipeline[0]).__name__) in loader_transforms:
        pipeline = pipeline[1:]
    return pipeline


@MODELS.register_module()
class ViewAugmentDataPreprocessor(SelfSupDataPreprocessor):
    """``SelfSupDataPreprocessor`` that first runs each view's photometric transforms on the batch.

    The data loader then only decodes and crops/resizes each view to uint8 (``RandomResizedCrop``,
    ``RoICrop``); in training this module runs the rest of each view's pipeline on the model's device
    (flip, colour jitter, grey, blur, solarize: see :mod:`.batch_augment`), with per-sample random
    parameters and the probabilities of the CPU pipeline, then converts the channels and normalises as
    ``SelfSupDataPreprocessor``. Views of the same size whose pipelines differ only in their parameters
    (BYOL's two views; ORL's patches) are augmented as one batch. Outside training it only normalises.

    Random parameters come from a CPU generator of its own, seeded from torch's global generator (which
    mmengine seeds) plus the rank, so ranks draw differently even when they share a seed, and a seed gives
    the same views on the CPU and on a GPU.

    Args:
        view_pipelines (list[list[dict]]): One pipeline per input view, in the order of the model inputs
            (stage 1: two; stage 3: six, as ``ORLViews`` packs them): the CPU view pipelines as they are.
            A leading crop (``loader_transforms``), which the data loader runs, is skipped here.
        loader_transforms (tuple[str]): Types of the leading transforms left to the data loader.
            Defaults to ``('RandomResizedCrop', 'RoICrop')``.
        channel_order (str): Channel order of the loader's images: 'bgr' (mmcv's loaders) or 'rgb'.
            ``RandomGrayscale``'s weights refer to it.
        seed (int, optional): Seed of the generator instead of one drawn from torch's.
        mean, std, pad_size_divisor, pad_value, to_rgb, bgr_to_rgb, rgb_to_bgr, non_blocking: As
            ``SelfSupDataPreprocessor``.
    """

    def __init__(self,
                 view_pipelines: Sequence[Sequence[Union[dict, object]]],
                 loader_transforms: Sequence[str] = ('RandomResizedCrop', 'RoICrop'),
                 channel_order: str = 'bgr',
                 seed: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 pad_size_divisor: int = 1,
                 pad_value: Union[float, int] = 0,
                 to_rgb: bool = False,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 non_blocking: Optional[bool] = False) -> None:
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            to_rgb=to_rgb,
            bgr_to_rgb=bgr_to_rgb,
            rgb_to_bgr=rgb_to_bgr,
            non_blocking=non_blocking)
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        self.channel_order = channel_order
        self.view_augments = [
            BatchViewAugment(_skip_loader_transforms(p, loader_transforms), channel_order) for p in view_pipelines
        ]
        self.seed = seed
        self._generator: Optional[torch.Generator] = None

    @property
    def generator(self) -> torch.Generator:
        """The CPU generator of the random parameters, created at first use."""
        if self._generator is None:
            seed = self.seed if self.seed is not None else int(torch.randint(2**62, (1, )).item())
            self._generator = torch.Generator().manual_seed((seed + 1000003 * get_rank()) % 2**63)
        return self._generator

    def augment(self, views: List[torch.Tensor]) -> List[torch.Tensor]:
        """Augment float RGB views (values 0..255), one pipeline per view; returns float RGB views."""
        if len(views) != len(self.view_augments):
            raise ValueError(f'{type(self).__name__} has {len(self.view_augments)} view pipelines but the batch '
                             f'has {len(views)} views: give one pipeline per view, in the order of the inputs')
        gen = self.generator
        params = [aug.sample(v.size(0), gen) for aug, v in zip(self.view_augments, views)]
        groups: 'OrderedDict[tuple, List[int]]' = OrderedDict()
        for i, (aug, v) in enumerate(zip(self.view_augments, views)):
            groups.setdefault((tuple(v.shape[1:]), aug.signature()), []).append(i)
        out: List[Optional[torch.Tensor]] = [None] * len(views)
        for members in groups.values():
            x = torch.cat([views[i] for i in members]) if len(members) > 1 else views[members[0]]
            x = self.view_augments[members[0]].apply(x, cat_params([params[i] for i in members]))
            for i, part in zip(members, x.split([views[i].size(0) for i in members])):
                out[i] = part
        return out

    def forward(self, data: dict, training: bool = False) -> dict:
        """Augment (in training), convert channels and normalise every view."""
        if not training:
            return super().forward(data, training)
        inputs = self.cast_data(data['inputs'])
        data_samples = self.cast_data(data.get('data_samples'))
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        in_bgr = self.channel_order == 'bgr'
        out_bgr = in_bgr != self._channel_conversion
        # Outside autocast: the model's optimiser context (AMP) must not turn the exact ops into fp16.
        device_type = inputs[0].device.type
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            views = [(v[:, [2, 1, 0]] if in_bgr else v).float() for v in inputs]
            views = self.augment(views)
            views = [v[:, [2, 1, 0]] if out_bgr else v for v in views]
            if self._enable_normalize:
                views = [(v - self.mean) / self.std for v in views]
        return {'inputs': views, 'data_samples': data_samples}
