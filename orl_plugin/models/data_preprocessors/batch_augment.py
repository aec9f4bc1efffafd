"""The photometric part of a view pipeline, run batched: per-sample random parameters drawn on the CPU (one
generator, so a seed gives the same views on any device), pixels changed on the images' device.

A pipeline is given as the CPU transforms' config dicts (the same dicts the CPU path runs); each is built
with mmpretrain's registry and its parsed settings (probabilities, ranges, weights) are read from the built
transform, so both paths share one definition and one parser. Supported: ``RandomFlip``, ``RandomApply``,
``ColorJitter`` (pillow backend), ``RandomGrayscale`` (``keep_channels=True``), ``GaussianBlur`` and
``Solarize`` of mmcv / mmpretrain. Each op draws what its CPU transform draws, from the same distributions.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmcv.transforms import BaseTransform, Compose, RandomApply, RandomFlip, RandomGrayscale
from mmengine.registry import DefaultScope
from mmpretrain.datasets.transforms import ColorJitter, GaussianBlur, Solarize
from mmpretrain.registry import TRANSFORMS

from . import functional as F

Params = Dict[str, object]

SUPPORTED = ('RandomFlip', 'RandomApply', 'ColorJitter', 'RandomGrayscale', 'GaussianBlur', 'Solarize')


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (high - low) + low


def _on(x: torch.Tensor, mask: torch.Tensor, fn: Callable, *params: torch.Tensor) -> torch.Tensor:
    """``x`` with ``fn(x[mask], *params[mask])`` written back; ``mask`` and ``params`` live on the CPU, so
    choosing the samples never waits for the device."""
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return x
    if idx.numel() == x.size(0):
        return fn(x, *params)
    sub = [p[idx] for p in params]
    idx = idx.to(x.device, non_blocking=True)
    return x.index_copy(0, idx, fn(x.index_select(0, idx), *sub))


class BatchOp:
    """One CPU transform, batched. ``sample`` draws its per-sample parameters (CPU tensors); ``apply``
    changes the samples of ``x`` that ``active`` (a CPU bool mask) selects and the draw applies to."""

    kind = ''

    def sample(self, n: int, gen: torch.Generator) -> Params:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: Params, active: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def signature(self) -> Tuple:
        """What views must share to be augmented as one batch (their parameters may differ)."""
        return (self.kind, )


class Flip(BatchOp):
    """mmcv ``RandomFlip(prob, direction='horizontal' | 'vertical')``."""

    kind = 'RandomFlip'

    def __init__(self, prob: float, direction: str) -> None:
        self.prob = float(prob)
        self.direction = direction

    def sample(self, n, gen):
        return dict(on=torch.rand(n, generator=gen, dtype=torch.float64) < self.prob)

    def apply(self, x, params, active):
        return _on(x, active & params['on'], F.hflip if self.direction == 'horizontal' else F.vflip)

    def signature(self):
        return (self.kind, self.direction)


class Apply(BatchOp):
    """mmcv ``RandomApply(transforms, prob)``."""

    kind = 'RandomApply'

    def __init__(self, prob: float, ops: List[BatchOp]) -> None:
        self.prob = float(prob)
        self.ops = ops

    def sample(self, n, gen):
        on = torch.rand(n, generator=gen, dtype=torch.float64) < self.prob
        return dict(on=on, ops=[op.sample(n, gen) for op in self.ops])

    def apply(self, x, params, active):
        active = active & params['on']
        for op, p in zip(self.ops, params['ops']):
            x = op.apply(x, p, active)
        return x

    def signature(self):
        return (self.kind, ) + tuple(op.signature() for op in self.ops)


class Jitter(BatchOp):
    """mmpretrain ``ColorJitter`` (pillow backend): a random order of brightness, contrast, saturation and
    hue per sample, each factor uniform in its range; a ``None`` range is skipped (no HSV round trip)."""

    kind = 'ColorJitter'
    OPS = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)

    def __init__(self, ranges: Sequence[Optional[Tuple[float, float]]]) -> None:
        self.ranges = list(ranges)  # brightness, contrast, saturation, hue

    def sample(self, n, gen):
        order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)  # a uniform random permutation
        factors, enabled = [], []
        for r in self.ranges:
            factors.append(_uniform(n, r[0], r[1], gen) if r is not None else torch.ones(n, dtype=torch.float64))
            enabled.append(torch.full((n, ), r is not None))
        return dict(order=order, factors=factors, enabled=enabled)

    def apply(self, x, params, active):
        for position in range(4):
            for k, fn in enumerate(self.OPS):
                mask = active & params['enabled'][k] & (params['order'][:, position] == k)
                x = _on(x, mask, fn, params['factors'][k])
        return x


class Grey(BatchOp):
    """mmcv ``RandomGrayscale(prob, keep_channels=True, channel_weights)``; the weights apply to the
    channels in the loader's order (BGR for mmcv's loaders)."""

    kind = 'RandomGrayscale'

    def __init__(self, prob: float, weights: Sequence[float], channel_order: str) -> None:
        self.prob = float(prob)
        self.weights = tuple(float(w) for w in weights)
        self.channel_order = channel_order

    def sample(self, n, gen):
        return dict(on=torch.rand(n, generator=gen, dtype=torch.float64) < self.prob)

    def apply(self, x, params, active):
        return _on(x, active & params['on'], self._grey)

    def _grey(self, x: torch.Tensor) -> torch.Tensor:
        return F.grayscale(x, self.weights, self.channel_order)

    def signature(self):
        return (self.kind, self.weights)


class _Magnitude:
    """mmpretrain ``BaseAugTransform.random_magnitude`` (or the fixed value), batched."""

    def __init__(self, t: BaseTransform, fixed: Optional[float]) -> None:
        self.fixed = fixed
        if fixed is None:
            self.range = tuple(t.magnitude_range)
            self.level, self.total, self.std = t.magnitude_level, t.total_level, t.magnitude_std

    def __call__(self, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.fixed is not None:
            return torch.full((n, ), float(self.fixed), dtype=torch.float64)
        if self.std == 'inf':
            m = _uniform(n, 0.0, self.level, gen)
        elif self.std > 0:
            m = (torch.randn(n, generator=gen, dtype=torch.float64) * self.std + self.level).clamp(0, self.total)
        else:
            m = torch.full((n, ), float(self.level), dtype=torch.float64)
        low, high = self.range
        return m / self.total * (high - low) + low


class _ProbMagnitudeOp(BatchOp):
    # mmpretrain's BaseAugTransform: disabled when rand() > prob; magnitude drawn after.

    def __init__(self, t: BaseTransform, fixed: Optional[float]) -> None:
        self.prob = float(t.prob)
        self.draw = _Magnitude(t, fixed)

    def sample(self, n, gen):
        on = torch.rand(n, generator=gen, dtype=torch.float64) <= self.prob
        return dict(on=on, magnitude=self.draw(n, gen))


class Blur(_ProbMagnitudeOp):
    """mmpretrain ``GaussianBlur``: PIL's Gaussian blur with radius (sigma) ``radius`` or drawn."""

    kind = 'GaussianBlur'

    def apply(self, x, params, active):
        return _on(x, active & params['on'], F.gaussian_blur, params['magnitude'])


class Solar(_ProbMagnitudeOp):
    """mmpretrain ``Solarize``: invert the pixels at or above ``thr``."""

    kind = 'Solarize'

    def apply(self, x, params, active):
        return _on(x, active & params['on'], F.solarize, params['magnitude'])


def build_op(transform, channel_order: str = 'bgr') -> BatchOp:
    """The batched op of one CPU transform (a config dict or a built transform)."""
    if isinstance(transform, dict):
        # mmpretrain's scope also for the transforms that wrappers (RandomApply) build themselves.
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            t = TRANSFORMS.build(transform)
    else:
        t = transform
    name = type(t).__name__
    if isinstance(t, RandomFlip):
        if not isinstance(t.prob, float) or t.direction not in ('horizontal', 'vertical'):
            raise ValueError(f'{name}: only one direction (horizontal or vertical) with one prob runs on the '
                             f'device, got prob={t.prob}, direction={t.direction}')
        return Flip(t.prob, t.direction)
    if isinstance(t, RandomApply):
        return Apply(t.prob, [build_op(c, channel_order) for c in t.transforms.transforms])
    if isinstance(t, Compose):
        raise ValueError('nested Compose: give the transforms as a list')
    if isinstance(t, ColorJitter):
        if t.backend != 'pillow':
            raise ValueError(f"ColorJitter: only backend='pillow' (mmpretrain's default) runs on the device, "
                             f'got {t.backend!r}')
        return Jitter([t.brightness, t.contrast, t.saturation, t.hue])
    if isinstance(t, RandomGrayscale):
        if not t.keep_channels or t.color_format == 'hsv':
            raise ValueError('RandomGrayscale: only keep_channels=True on BGR/RGB images runs on the device')
        return Grey(t.prob, t.channel_weights, channel_order)
    if isinstance(t, GaussianBlur):
        return Blur(t, t.radius)
    if isinstance(t, Solarize):
        return Solar(t, t.thr)
    raise ValueError(f'{name} has no device version; the device runs {", ".join(SUPPORTED)} '
                     '(keep the others in the data-loader pipeline)')


class BatchViewAugment:
    """The batched ops of one view pipeline (a list of transform configs).

    Args:
        pipeline: The photometric transforms of the view, as in its CPU pipeline.
        channel_order: The channel order of the loader's arrays ('bgr' for mmcv's loaders), which
            ``RandomGrayscale``'s weights refer to. The images given to :meth:`apply` are RGB.
    """

    def __init__(self, pipeline: Sequence, channel_order: str = 'bgr') -> None:
        self.ops = [build_op(t, channel_order) for t in pipeline]

    def signature(self) -> Tuple:
        return tuple(op.signature() for op in self.ops)

    def sample(self, n: int, gen: torch.Generator) -> List[Params]:
        return [op.sample(n, gen) for op in self.ops]

    def apply(self, x: torch.Tensor, params: List[Params]) -> torch.Tensor:
        active = torch.ones(x.size(0), dtype=torch.bool)
        for op, p in zip(self.ops, params):
            x = op.apply(x, p, active)
        return x


def cat_params(params: Sequence[object]) -> object:
    """Concatenate the parameters of views with the same signature, sample-wise."""
    first = params[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(params))
    if isinstance(first, dict):
        return {k: cat_params([p[k] for p in params]) for k in first}
    if isinstance(first, list):
        return [cat_params([p[i] for p in params]) for i in range(len(first))]
    raise TypeError(f'cannot concatenate parameters of type {type(first).__name__}')
