"""Batched photometric ops with the rounding of the CPU transforms they replace.

Images are float32 ``(N, 3, H, W)`` tensors of whole numbers 0..255 in RGB order, on any device. Every op
ends where its CPU counterpart (mmcv's ``adjust_*`` with the pillow backend, i.e. PIL's ``ImageEnhance``,
PIL's ``GaussianBlur``, mmcv's ``RandomGrayscale`` and ``solarize``) ends: on the uint8 values it would
write, because the next op of a view pipeline reads those. So a view augmented here has, for the same
parameters, the pixels of the CPU pipeline (the tests state how close: most ops bit-exact). Per-sample
parameters are ``(N,)`` tensors on any device.
"""
from typing import Sequence

import numpy as np
import torch

from ...utils.pil_box_blur import pil_box_blur_weights

__all__ = [
    'hflip', 'vflip', 'luma', 'adjust_brightness', 'adjust_contrast', 'adjust_saturation', 'adjust_hue', 'grayscale',
    'gaussian_blur', 'solarize', 'pil_box_blur_weights'
]


def _per_sample(value: torch.Tensor, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return value.to(device=x.device, dtype=dtype).view(-1, 1, 1, 1)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (mmcv ``imflip(direction='horizontal')``)."""
    return x.flip(-1)


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom."""
    return x.flip(-2)


def _blend(degenerate: torch.Tensor, img: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # PIL ImagingBlend on uint8: (UINT8)(in1 + alpha * (in2 - in1)) in C float, clipped to 0..255 and
    # truncated. The two steps are kept apart (no fused multiply-add) so float32 rounds as C does.
    out = (img - degenerate) * _per_sample(factor, img)
    return (out + degenerate).clamp_(0, 255).floor_()


def luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')``: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16`` (exact in float32: every
    partial sum is an integer below 2**24). Returns ``(N, 1, H, W)``."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with a black image."""
    return _blend(torch.zeros((), device=x.device), x, factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the grey image of the luma mean, rounded half up."""
    l_img = luma(x)
    # ImageStat: the exact integer sum / the count, in double precision.
    mean = l_img.double().sum(dim=(1, 2, 3)) / (l_img.shape[-1] * l_img.shape[-2])
    degenerate = torch.floor(mean + 0.5).float().view(-1, 1, 1, 1)
    return _blend(degenerate, x, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the luma image."""
    return _blend(luma(x), x, factor)


def _rgb_to_hsv(x: torch.Tensor):
    # PIL's rgb2hsv_row (Convert.c): float for the ratios, double where C promotes to double.
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    grey = maxc == minc
    cr = torch.where(grey, torch.ones_like(maxc), maxc - minc)
    s = cr / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    rc = ((maxc - r) / cr).double()
    gc = ((maxc - g) / cr).double()
    bc = ((maxc - b) / cr).double()
    h = torch.where(r == maxc, bc - gc, torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc)).float()
    h = torch.fmod(h.double() / 6.0 + 1.0, 1.0).float()
    uh = torch.trunc(h.double() * 255.0).clamp_(0, 255)
    us = torch.trunc(s.double() * 255.0).clamp_(0, 255)
    zero = torch.zeros_like(uh)
    return torch.where(grey, zero, uh), torch.where(grey, zero, us), maxc.double()


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # PIL's hsv2rgb (Convert.c); inputs are whole numbers in float64, C's round() is half away from 0.
    hh = h * 6.0 / 255.0
    i = torch.floor(hh)
    f = (hh - i).float().double()
    fs = (s / 255.0).float().double()
    p = torch.floor(v * (1.0 - fs) + 0.5).clamp_(0, 255)
    q = torch.floor(v * (1.0 - (fs.float() * f.float()).double()) + 0.5).clamp_(0, 255)
    t = torch.floor(v * (1.0 - fs * (1.0 - f)) + 0.5).clamp_(0, 255)
    sector = torch.remainder(i, 6).long()
    # (R, G, B) per sector 0..5: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    table = torch.stack([v, q, p, t], dim=0)  # indices 0..3
    pick = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=h.device)
    idx = pick[sector]  # (N, H, W, 3)
    rgb = torch.gather(table, 0, idx.permute(3, 0, 1, 2))  # (3, N, H, W)
    rgb = torch.where((s == 0).unsqueeze(0), v.unsqueeze(0), rgb)
    return rgb.permute(1, 0, 2, 3).float()


def adjust_hue(x: torch.Tensor, hue_factor: torch.Tensor) -> torch.Tensor:
    """mmcv ``adjust_hue`` (pillow backend, with the project's numpy-2 fix): RGB -> PIL HSV, the uint8 hue
    channel rotated by ``int(hue_factor * 255) mod 256``, back to RGB."""
    shift = torch.remainder(torch.trunc(hue_factor.double() * 255), 256)
    h, s, v = _rgb_to_hsv(x)
    h = torch.remainder(h + _per_sample(shift, x, torch.float64).view(-1, 1, 1), 256)
    return _hsv_to_rgb(h, s, v)


def grayscale(x: torch.Tensor, weights: Sequence[float], channel_order: str = 'bgr') -> torch.Tensor:
    """mmcv ``RandomGrayscale(keep_channels=True)``: the weighted sum of the channels of the array as the
    loader gave it (``channel_order``), weights normalised to sum 1, truncated, in every channel.

    Computed in float64 with numpy's order of additions, as mmcv does, so it is bit-exact.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    channels = (2, 1, 0) if channel_order == 'bgr' else (0, 1, 2)  # array channel k -> RGB tensor channel
    acc = None
    for k, c in enumerate(channels):
        term = x[:, c:c + 1].double() * float(w[k])
        acc = term if acc is None else acc + term
    return torch.trunc(acc).clamp_(0, 255).float().expand_as(x).contiguous()


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """mmcv ``solarize``: ``x if x < thr else 255 - x``."""
    return torch.where(x < _per_sample(threshold, x), x, 255 - x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, passes: int = 3) -> torch.Tensor:
    """PIL ``ImageFilter.GaussianBlur(radius=sigma)`` (mmpretrain's ``GaussianBlur``), per-sample sigma:
    ``passes`` horizontal box passes, then ``passes`` vertical ones, each rounded to uint8 as PIL's
    ``(acc + 2**23) >> 24``, edges replicated. Bit-exact with PIL: the integer weights times 8-bit values
    and their sums stay below 2**36, exact in float64 (float32 misses PIL's rounding on up to 10 % of the
    pixels for some sigmas). One depthwise convolution per pass, a kernel per sample."""
    radius, ww, fw = pil_box_blur_weights(sigma.detach().cpu().numpy(), passes)
    reach = int(radius.max()) + 1
    offsets = np.abs(np.arange(-reach, reach + 1))[None, :]
    taps = np.where(offsets <= radius[:, None], ww[:, None], np.where(offsets == radius[:, None] + 1, fw[:, None], 0))
    n, c, h, w = x.shape
    taps = torch.from_numpy(taps).to(x.device, torch.float64, non_blocking=True).repeat_interleave(c, 0)
    y = x.to(torch.float64).reshape(1, n * c, h, w)
    horizontal = taps.view(n * c, 1, 1, -1), (reach, reach, 0, 0)
    vertical = taps.view(n * c, 1, -1, 1), (0, 0, reach, reach)
    for weight, pad in (horizontal, vertical):
        for _ in range(passes):
            acc = torch.nn.functional.conv2d(torch.nn.functional.pad(y, pad, mode='replicate'), weight, groups=n * c)
            y = torch.floor((acc + (1 << 23)) / (1 << 24))
    return y.reshape(n, c, h, w).float()
