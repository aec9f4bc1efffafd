"""Fitting stored ``[x, y, w, h]`` boxes to the image they are cropped from."""
import logging
from typing import Optional, Tuple

import numpy as np
from mmengine.logging import print_log


def clip_boxes_xywh(boxes: np.ndarray, img_w: int, img_h: int) -> Tuple[np.ndarray, np.ndarray]:
    """Clip integer ``xywh`` boxes to a ``img_w x img_h`` image.

    Returns ``(clipped, valid)``: the boxes clipped to the image (int64, same rows) and a mask of
    those with at least one pixel inside (a box wholly outside, or of zero area, is invalid).
    A box already inside is returned unchanged, so clipping never alters official data that fits.
    """
    b = np.rint(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).astype(np.int64)
    x1 = np.clip(b[:, 0], 0, img_w)
    y1 = np.clip(b[:, 1], 0, img_h)
    x2 = np.clip(b[:, 0] + b[:, 2], 0, img_w)
    y2 = np.clip(b[:, 1] + b[:, 3], 0, img_h)
    valid = (b[:, 2] > 0) & (b[:, 3] > 0) & (x2 > x1) & (y2 > y1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1), valid


def image_shape(results: dict) -> Optional[Tuple[int, int]]:
    """``(h, w)`` of ``results['img']``, else ``results['img_shape']``, else ``None``."""
    if results.get('img') is not None:
        return tuple(results['img'].shape[:2])
    shape = results.get('img_shape')
    return None if shape is None else tuple(shape[:2])


def fit_boxes(owner: str, results: dict, boxes: np.ndarray, dropped_before: int = 0) -> Tuple[np.ndarray, int]:
    """``boxes`` clipped to the image of ``results``, those with no pixel in it dropped.

    Returns ``(boxes, number dropped)``; drops are reported by :func:`warn_dropped_boxes` (with
    ``dropped_before``, the owner's count so far). Without an image shape in ``results`` the boxes
    are returned as they are.
    """
    shape = image_shape(results)
    if shape is None:
        return boxes, 0
    h, w = shape
    clipped, valid = clip_boxes_xywh(boxes, w, h)
    dropped = int((~valid).sum())
    if dropped:
        warn_dropped_boxes(owner, results.get('img_path', '?'), dropped, len(valid), w, h, dropped_before + dropped)
    return clipped[valid], dropped


def warn_dropped_boxes(owner: str,
                       img_path: str,
                       num_dropped: int,
                       num_boxes: int,
                       img_w: int,
                       img_h: int,
                       total: int,
                       what: str = 'boxes') -> None:
    """The warning for boxes dropped from one image (``total``: dropped so far by this process)."""
    print_log(
        f'{owner}: dropped {num_dropped} of {num_boxes} {what} of image {img_path}: wholly '
        f'outside its {img_w}x{img_h} pixels or of zero area (boxes mined on another '
        f'orientation or another image?); {total} dropped so far in this process',
        logger='current',
        level=logging.WARNING)
