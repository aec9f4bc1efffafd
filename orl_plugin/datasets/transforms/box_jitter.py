"""Jittered partner box of an intra-RoI (ORL stage 3)."""
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from .box_ops import clip_boxes_xywh


def box_iou_xywh(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x, y, w, h]`` box with each row of ``boxes`` (M, 4)."""
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2]) - \
        np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3]) - \
        np.maximum(box[1], boxes[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


def jitter_box(box: Sequence[float],
               img_w: int,
               img_h: int,
               scale: Tuple[float, float] = (0.5, 2.0),
               ratio: Tuple[float, float] = (0.5, 2.0),
               shift: Tuple[float, float] = (-0.5, 0.5),
               iou_thr: float = 0.5,
               max_attempts: int = 200,
               rng: Optional[np.random.RandomState] = None) -> np.ndarray:
    """Draw a jittered copy of an ``[x, y, w, h]`` box, as in ORL.

    Each attempt scales the area by U(``scale``), sets the aspect ratio
    (w / h) log-uniformly in ``ratio`` and moves the centre by U(``shift``)
    times the box width / height; integer boxes as in the official release.
    The first attempt that lies inside the image and has IoU > ``iou_thr``
    with the original wins; after ``max_attempts`` failures the box itself
    is returned.

    Args:
        rng: source of randomness; defaults to ``np.random`` (the global
            state every mmcv / mmpretrain transform draws from, seeded by
            mmengine per run and per data-loader worker).

    Returns:
        np.ndarray: int64 ``[x, y, w, h]``.
    """
    rng = np.random if rng is None else rng
    x, y, w, h = (float(v) for v in box)
    n = int(max_attempts)
    # All attempts drawn at once; taking the first valid one is the same
    # rule as drawing them one by one.
    area = w * h * rng.uniform(scale[0], scale[1], size=n)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=n))
    cx = x + 0.5 * w + rng.uniform(shift[0], shift[1], size=n) * w
    cy = y + 0.5 * h + rng.uniform(shift[0], shift[1], size=n) * h
    aw = np.round(np.sqrt(area * aspect))
    ah = np.round(np.sqrt(area / aspect))
    ax = np.round(cx - 0.5 * aw)
    ay = np.round(cy - 0.5 * ah)
    cand = np.stack([ax, ay, aw, ah], axis=1)
    inside = (ax >= 0) & (ay >= 0) & (ax + aw <= img_w) & (ay + ah <= img_h) \
        & (aw >= 1) & (ah >= 1)
    ok = inside & (box_iou_xywh(np.array([x, y, w, h]), cand) > iou_thr)
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return np.array([x, y, w, h]).round().astype(np.int64)
    return cand[hits[0]].astype(np.int64)


@TRANSFORMS.register_module()
class BoxJitter(BaseTransform):
    """Add the jittered partner of an intra-RoI box (ORL stage 3).

    **Required keys:** ``img`` or ``img_shape``, ``box_key``.
    **Added keys:** ``out_key`` (int64 ``[x, y, w, h]``).

    A box partly outside the image is clipped to it before jittering. A box
    with no pixel inside is passed on as it is, for ``RoICrop`` to report
    (the ORL data set then draws another sample).

    Args:
        box_key (str): Key of the ``[x, y, w, h]`` box to jitter.
        out_key (str): Key to write the jittered box to.
        scale (tuple): Range of the area factor. Defaults to (0.5, 2.0).
        ratio (tuple): Range of the aspect ratio w/h, sampled log-uniformly.
            Defaults to (0.5, 2.0).
        shift (tuple): Range of the centre shift in units of the box width /
            height. Defaults to (-0.5, 0.5).
        iou_thr (float): Minimum (exclusive) IoU with the original box.
        max_attempts (int): Attempts before falling back to the box itself.
    """

    def __init__(self,
                 box_key: str = 'intra_bbox',
                 out_key: str = 'intra_bbox_jittered',
                 scale: Tuple[float, float] = (0.5, 2.0),
                 ratio: Tuple[float, float] = (0.5, 2.0),
                 shift: Tuple[float, float] = (-0.5, 0.5),
                 iou_thr: float = 0.5,
                 max_attempts: int = 200) -> None:
        if not (0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f'BoxJitter: invalid scale {scale} or ratio '
                             f'{ratio}')
        self.box_key = box_key
        self.out_key = out_key
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.shift = tuple(shift)
        self.iou_thr = iou_thr
        self.max_attempts = max_attempts

    def transform(self, results: dict) -> dict:
        """Write the jittered box of ``results[box_key]``."""
        if 'img' in results:
            img_h, img_w = results['img'].shape[:2]
        else:
            img_h, img_w = results['img_shape'][:2]
        box = np.asarray(results[self.box_key]).reshape(4)
        clipped, valid = clip_boxes_xywh(box, img_w, img_h)
        if not valid[0]:
            results[self.out_key] = box.round().astype(np.int64)
            return results
        results[self.out_key] = jitter_box(clipped[0], img_w, img_h, self.scale, self.ratio, self.shift, self.iou_thr,
                                           self.max_attempts)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(box_key={self.box_key!r}, '
                f'out_key={self.out_key!r}, scale={self.scale}, '
                f'ratio={self.ratio}, shift={self.shift}, '
                f'iou_thr={self.iou_thr}, max_attempts={self.max_attempts})')
