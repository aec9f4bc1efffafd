"""``mmcv.adjust_hue`` under numpy 2: a negative hue shift wraps around instead of raising ``OverflowError``."""
import functools

import cv2
import mmcv
import mmcv.image
import mmcv.image.photometric as mmcv_photometric
import numpy as np
from PIL import Image

from ._marker import is_patched, mark_patched

__all__ = ['patch_adjust_hue']


def _shift_hue(hue: np.ndarray, hue_factor: float) -> np.ndarray:
    """Rotate a uint8 hue channel by ``hue_factor`` of a full turn (255 = one turn)."""
    shift = int(hue_factor * 255) % 256  # truncation as numpy 1's cast did, then wrap
    return ((hue.astype(np.int16) + shift) % 256).astype(np.uint8)


def patch_adjust_hue() -> None:
    orig = mmcv_photometric.adjust_hue
    if is_patched(orig):
        return

    @functools.wraps(orig)
    def adjust_hue(img: np.ndarray, hue_factor: float, backend: str = None) -> np.ndarray:
        if backend is None:
            backend = mmcv_photometric.imread_backend
        if backend not in ['cv2', 'pillow']:
            raise ValueError(f'backend: {backend} is not supported.'
                             f"Supported backends are 'cv2', 'pillow'")
        if not (-0.5 <= hue_factor <= 0.5):
            raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
        if not (isinstance(img, np.ndarray) and (img.ndim in {2, 3})):
            raise TypeError('img should be ndarray with dim=[2 or 3].')
        if backend == 'pillow':
            assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
            pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
            h, s, v = pil_image.convert('HSV').split()
            h = Image.fromarray(_shift_hue(np.array(h, dtype=np.uint8), hue_factor), 'L')
            pil_image = Image.merge('HSV', (h, s, v)).convert('RGB')
            return np.array(pil_image, dtype=img.dtype)[..., ::-1]
        dtype = img.dtype
        hsv_img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
        h, s, v = cv2.split(hsv_img)
        hsv_img = cv2.merge([_shift_hue(h, hue_factor), s, v])
        return cv2.cvtColor(hsv_img, cv2.COLOR_HSV2BGR_FULL).astype(dtype)

    mark_patched(adjust_hue)
    # mmpretrain calls `mmcv.adjust_hue`; the other two names are where users import it.
    for namespace in (mmcv_photometric, mmcv.image, mmcv):
        namespace.adjust_hue = adjust_hue
