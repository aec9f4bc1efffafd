"""The direct path's photometric operations: PIL's own hue and blur (mmcv's pillow backend, the reference), and
for ``photometric='opencv'`` the whole chain on the uint8 array (BGR or RGB) with PIL's arithmetic.

Brightness, contrast, saturation and solarize give PIL's pixels exactly; the hue and the blur keep PIL's
quantisation and give its pixels but for rare rounding at bin edges
(``tests/test_datasets/test_transforms/test_fast_photometric.py`` states how close).
"""
import cv2
import numpy as np
from PIL import Image, ImageFilter

from ...utils.pil_box_blur import pil_box_blur_weights

__all__ = [
    'PHOTOMETRIC_BACKENDS', 'pil_hue', 'opencv_hue', 'pil_blur', 'opencv_blur', 'pil_luma', 'brightness', 'contrast',
    'saturation', 'solarize'
]

#: How the direct path runs its photometric operations: 'pil' (the mmcv/PIL operations on a PIL image,
#: pixel for pixel) or 'opencv' (the functions of this module on the uint8 array, no PIL image).
PHOTOMETRIC_BACKENDS = ('pil', 'opencv')
_F32 = np.float32
# PIL's RGB -> L weights (Convert.c, in 2**-16), per channel of each order
_LUMA = dict(rgb=np.array([[19595, 38470, 7471]], _F32), bgr=np.array([[7471, 38470, 19595]], _F32))
_HSV = dict(rgb=(cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB), bgr=(cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR))


def _hue_shift(factor: float) -> int:
    # mmcv adjust_hue (pillow backend, the project's numpy-2 fix): PIL's uint8 hue + int(factor * 255) mod 256
    return int(factor * 255) % 256


def pil_hue(img: Image.Image, factor: float) -> Image.Image:
    """mmcv ``adjust_hue`` with the pillow backend: PIL HSV, the hue channel rotated, back to RGB."""
    h, s, v = img.convert('HSV').split()
    shift = _hue_shift(factor)
    h = h.point([(i + shift) % 256 for i in range(256)])
    return Image.merge('HSV', (h, s, v)).convert('RGB')


def opencv_hue(img: np.ndarray, factor: float, order: str = 'bgr') -> np.ndarray:
    """:func:`pil_hue` on a uint8 array in OpenCV's float HSV: H (degrees) and S truncated to PIL's 8-bit
    levels, the hue level shifted mod 256, back to the array's channel ``order`` ('bgr' or 'rgb'; V is the
    channel maximum in both), rounded to uint8."""
    to_hsv, from_hsv = _HSV[order]
    hsv = cv2.cvtColor(img.astype(_F32), to_hsv)
    h, s = hsv[..., 0].copy(), hsv[..., 1].copy()  # contiguous: 4x cheaper arithmetic than on the strides
    h *= _F32(255 / 360)  # PIL's H: 255ths of a turn
    np.floor(h, out=h)
    h += _F32(_hue_shift(factor))
    np.subtract(h, _F32(256), out=h, where=h >= 256)
    h *= _F32(360 / 255)
    s *= _F32(255)
    np.floor(s, out=s)
    s *= _F32(1 / 255)
    hsv[..., 0], hsv[..., 1] = h, s
    return cv2.convertScaleAbs(cv2.cvtColor(hsv, from_hsv))


def pil_blur(img: Image.Image, sigma: float) -> Image.Image:
    """mmpretrain's ``GaussianBlur``: PIL's ``GaussianBlur(radius=sigma)``."""
    return img.filter(ImageFilter.GaussianBlur(radius=sigma))


def opencv_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`pil_blur` on a uint8 array as PIL computes it: three horizontal then three vertical extended
    box filters with PIL's integer weights (``BoxBlur.c``), edges replicated, each pass rounded to uint8
    (OpenCV, float32: PIL rounds the exact sums, which decides differently on a few pixels for some sigmas)."""
    radius, ww, fw = (int(v[0]) for v in pil_box_blur_weights(np.array([sigma])))
    box = np.array([fw] + [ww] * (2 * radius + 1) + [fw], _F32) * _F32(2**-24)
    out = img
    for kernel in (box[None], ) * 3 + (box[:, None], ) * 3:
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return out


def pil_luma(img: np.ndarray, order: str = 'bgr') -> np.ndarray:
    """PIL's ``convert('L')`` of a uint8 colour array, as float32 integers:
    ``L = (19595 R + 38470 G + 7471 B + 2**15) >> 16``, exact in float32."""
    return _luma(img.astype(_F32), order)


def _luma(img: np.ndarray, order: str) -> np.ndarray:
    # the weighted sum of a float32 copy: exact in float32 (integers below 2**24), so the shift is a floor
    luma = cv2.transform(img, _LUMA[order])
    luma += _F32(2**15)
    luma *= _F32(2**-16)
    return np.floor(luma, out=luma)


def _blend(degenerate, image: np.ndarray, factor: float) -> np.ndarray:
    # PIL's Image.blend (Blend.c): float32 degenerate + factor * (image - degenerate), clipped, truncated;
    # ``image`` (float32) is overwritten
    image -= degenerate
    image *= _F32(factor)
    image += degenerate
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)


def _blend_table(degenerate: int, factor: float) -> np.ndarray:
    return _blend(_F32(degenerate), np.arange(256, dtype=_F32), factor)


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """``ImageEnhance.Brightness(img).enhance(factor)`` on a uint8 array (PIL's pixels)."""
    return cv2.LUT(img, _blend_table(0, factor))


def contrast(img: np.ndarray, factor: float, order: str = 'bgr') -> np.ndarray:
    """``ImageEnhance.Contrast(img).enhance(factor)`` on a uint8 colour array (PIL's pixels): the blend with
    the mean luma rounded half up (``ImageStat``'s exact integer sum over the pixel count)."""
    luma = pil_luma(img, order)
    mean = int(luma.sum(dtype=np.float64) / luma.size + 0.5)
    return cv2.LUT(img, _blend_table(mean, factor))


def saturation(img: np.ndarray, factor: float, order: str = 'bgr') -> np.ndarray:
    """``ImageEnhance.Color(img).enhance(factor)`` on a uint8 colour array (PIL's pixels): each channel
    blended with PIL's luma."""
    out = img.astype(_F32)
    luma = _luma(out, order)
    return _blend(cv2.merge([luma] * img.shape[2]), out, factor)


def solarize(img: np.ndarray, threshold: float) -> np.ndarray:
    """``ImageOps.solarize`` (and mmcv's ``solarize``) on a uint8 array: levels from ``threshold`` up
    inverted."""
    levels = np.arange(256)
    return cv2.LUT(img, np.where(levels < threshold, levels, 255 - levels).astype(np.uint8))
