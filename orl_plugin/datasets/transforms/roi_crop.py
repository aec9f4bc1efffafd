"""Crop one RoI from an image and resize it to a fixed patch (ORL stage 3)."""
from typing import Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from .crop_boxes import crop_boxes


class BoxOutsideImageError(ValueError):
    """A box with no pixel inside its image (wholly outside, or of zero area)."""


def fit_roi(box, img_w: int, img_h: int, box_key: str = 'roi_bbox', img_path: str = '?') -> Tuple[int, int, int, int]:
    """The ``[x, y, w, h]`` box clipped to a ``img_w x img_h`` image (as :func:`clip_boxes_xywh`, for one box
    without numpy's per-call cost); :class:`BoxOutsideImageError`, naming the image and the box, if it has no
    pixel inside."""
    x, y, w, h = (int(round(float(v))) for v in np.asarray(box).reshape(4).tolist())
    x1, y1 = min(max(x, 0), img_w), min(max(y, 0), img_h)
    x2, y2 = min(max(x + w, 0), img_w), min(max(y + h, 0), img_h)
    if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
        raise BoxOutsideImageError(
            f'RoICrop: box {box_key}={[x, y, w, h]} (xywh) has no pixel inside image {img_path} of size '
            f'{img_w}x{img_h}; the mined boxes do not match this image')
    return x1, y1, x2 - x1, y2 - y1


@TRANSFORMS.register_module()
class RoICrop(BaseTransform):
    """Replace ``img`` by the crop of the ``[x, y, w, h]`` box
    ``results[box_key]``, resized to ``size`` (the ORL RoI patch; no random
    crop).

    Uses :func:`crop_boxes` (PIL crop + bilinear resize, the official
    ``TF.resized_crop`` on integer boxes). A box partly outside the image is
    clipped to it (PIL would pad it with black). A box with no pixel inside
    raises :class:`BoxOutsideImageError` naming the image and the box; the
    ORL data set fits the stored boxes to their images before they get here,
    and turns this error into another sample if a pipeline makes one.

    **Required keys:** ``img``, ``box_key``. **Modified keys:** ``img``,
    ``img_shape``.

    Args:
        size (int | tuple[int, int]): Output (h, w); an int gives a square.
            Defaults to 96.
        box_key (str): Key of the box. Defaults to ``'roi_bbox'``.
    """

    def __init__(self, size: Union[int, Sequence[int]] = 96, box_key: str = 'roi_bbox') -> None:
        self.size = size if isinstance(size, int) else tuple(size)
        self.box_key = box_key

    def transform(self, results: dict) -> dict:
        """Replace ``img`` by the resized crop of the box."""
        img = results['img']
        img_h, img_w = img.shape[:2]
        box = fit_roi(results[self.box_key], img_w, img_h, self.box_key, results.get('img_path', '?'))
        patch = crop_boxes(img, np.array([box]), self.size)[0]
        results['img'] = patch
        results['img_shape'] = patch.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'box_key={self.box_key!r})')
