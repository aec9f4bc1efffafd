"""The direct path's hue shift and Gaussian blur: PIL's (mmcv's pillow backend, the reference) and the same
arithmetic run with OpenCV (``photometric='opencv'``), about 5x and 6x cheaper, on PIL RGB images.

The OpenCV versions keep PIL's quantisation, so they give PIL's pixels but for rare rounding at bin edges
(``tests/test_fast_photometric.py`` states how close): the hue goes through PIL's 8-bit H and S (truncated
as PIL's ``rgb2hsv``) in OpenCV's float HSV; the blur runs PIL's three extended box filters per axis with
PIL's integer weights (``BoxBlur.c``), one OpenCV filter per pass, each rounded to uint8 (in float32: PIL
rounds the exact sums, which decides differently on a few pixels for some sigmas).
"""
import cv2
import numpy as np
from PIL import Image, ImageFilter

from ...pil_box_blur import pil_box_blur_weights

__all__ = ['PHOTOMETRIC_BACKENDS', 'pil_hue', 'opencv_hue', 'pil_blur', 'opencv_blur']

#: How the direct path shifts the hue and blurs: 'pil' (the mmcv/PIL operations, pixel for pixel) or
#: 'opencv' (:func:`opencv_hue`, :func:`opencv_blur`). The other operations are the same in both.
PHOTOMETRIC_BACKENDS = ('pil', 'opencv')


def _hue_shift(factor: float) -> int:
    # mmcv adjust_hue (pillow backend, the project's numpy-2 fix): PIL's uint8 hue + int(factor * 255) mod 256
    return int(factor * 255) % 256


def pil_hue(img: Image.Image, factor: float) -> Image.Image:
    """mmcv ``adjust_hue`` with the pillow backend: PIL HSV, the hue channel rotated, back to RGB."""
    h, s, v = img.convert('HSV').split()
    shift = _hue_shift(factor)
    h = h.point([(i + shift) % 256 for i in range(256)])
    return Image.merge('HSV', (h, s, v)).convert('RGB')


def opencv_hue(img: Image.Image, factor: float) -> Image.Image:
    """:func:`pil_hue` in OpenCV's float HSV: H (degrees) and S truncated to PIL's 8-bit levels, the hue
    level shifted mod 256, back to RGB (V is the channel maximum in both), rounded to uint8."""
    hsv = cv2.cvtColor(np.asarray(img, dtype=np.float32), cv2.COLOR_RGB2HSV)
    h, s = hsv[..., 0], hsv[..., 1]
    h *= np.float32(255 / 360)  # PIL's H: 255ths of a turn
    np.floor(h, out=h)
    h += np.float32(_hue_shift(factor))
    h[h >= 256] -= 256
    h *= np.float32(360 / 255)
    s *= np.float32(255)
    np.floor(s, out=s)
    s *= np.float32(1 / 255)
    return Image.fromarray(cv2.convertScaleAbs(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)))


def pil_blur(img: Image.Image, sigma: float) -> Image.Image:
    """mmpretrain's ``GaussianBlur``: PIL's ``GaussianBlur(radius=sigma)``."""
    return img.filter(ImageFilter.GaussianBlur(radius=sigma))


def opencv_blur(img: Image.Image, sigma: float) -> Image.Image:
    """:func:`pil_blur` as PIL computes it: three horizontal then three vertical extended box filters with
    PIL's integer weights, edges replicated, each pass rounded to uint8 (OpenCV, float32)."""
    radius, ww, fw = (int(v[0]) for v in pil_box_blur_weights(np.array([sigma])))
    box = np.array([fw] + [ww] * (2 * radius + 1) + [fw], np.float32) * np.float32(2**-24)
    out = np.asarray(img)
    for kernel in (box[None], ) * 3 + (box[:, None], ) * 3:
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return Image.fromarray(out)
