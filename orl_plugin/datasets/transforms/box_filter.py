"""The ORL proposal filter (stage 2c, step 1) and a transform wrapping it."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from .box_ops import fit_boxes, image_shape


def _max_iou_xywh(kept: np.ndarray, box: np.ndarray) -> float:
    """Largest IoU between ``box`` and the rows of ``kept`` (all ``xywh``).

    Areas are ``w * h`` with no ``+1``, as in the official ``get_max_iou``. A
    zero-area union (two degenerate boxes) counts as IoU 0 instead of NaN.
    """
    x1 = np.maximum(kept[:, 0], box[0])
    y1 = np.maximum(kept[:, 1], box[1])
    x2 = np.minimum(kept[:, 0] + kept[:, 2], box[0] + box[2])
    y2 = np.minimum(kept[:, 1] + kept[:, 3], box[1] + box[3])
    inter = np.maximum(x2 - x1, 0.) * np.maximum(y2 - y1, 0.)
    union = kept[:, 2] * kept[:, 3] + box[2] * box[3] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return float(iou.max())


def filter_boxes(boxes_xywh: np.ndarray,
                 min_size: Optional[float] = 96,
                 max_ratio: Optional[float] = 3.0,
                 max_iou: Optional[float] = 0.5,
                 topk: Optional[int] = 100) -> np.ndarray:
    """Filter raw selective-search boxes exactly as ORL's ``box_filter``.

    Boxes are visited in their given order:

    1. drop a box with ``w < min_size`` or ``h < min_size``;
    2. drop a box with ``max(w / h, h / w) > max_ratio``;
    3. drop a box whose IoU with any box kept so far is ``> max_iou``;
    4. keep the first ``topk`` survivors;
    5. if nothing survives, keep raw box 0.

    A falsy parameter (``None`` or 0) switches its step off, like the
    official code. The greedy pass stops once ``topk`` boxes are kept: later
    boxes could only be appended after them, so the result is the same.

    Args:
        boxes_xywh: ``(N, 4)`` raw boxes ``[x, y, w, h]``.
        min_size: Minimum width and height.
        max_ratio: Maximum aspect ratio.
        max_iou: De-duplication IoU threshold.
        topk: Number of boxes to keep.

    Returns:
        ``(K, 4)`` kept boxes, same dtype as the input, ``1 <= K <= topk``.
        An empty input gives an empty ``(0, 4)`` array: the caller decides
        what stands in for it (the whole-image box in the mining steps).
    """
    boxes = np.asarray(boxes_xywh)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'filter_boxes expects (N, 4) xywh boxes, got shape {boxes.shape}')
    b = boxes.astype(np.float64)
    w, h = b[:, 2], b[:, 3]
    ok = np.ones(len(b), dtype=bool)
    if min_size:
        ok &= (w >= min_size) & (h >= min_size)
    if max_ratio:
        # A zero side makes the ratio infinite: the box is dropped (the
        # official code would divide by zero there).
        with np.errstate(divide='ignore', invalid='ignore'):
            ratio = np.maximum(w / h, h / w)
        ok &= ~(ratio > max_ratio) & ~np.isnan(ratio)
    candidates = np.flatnonzero(ok)

    keep: list = []
    limit = topk if topk else len(candidates)
    kept_arr = np.empty((limit, 4), dtype=np.float64)
    for idx in candidates:
        if len(keep) >= limit:
            break
        if max_iou and keep:
            if _max_iou_xywh(kept_arr[:len(keep)], b[idx]) > max_iou:
                continue
        kept_arr[len(keep)] = b[idx]
        keep.append(idx)
    if not keep:
        keep = [0]
    return boxes[np.asarray(keep, dtype=np.int64)].copy()


@TRANSFORMS.register_module()
class FilterBoxes(BaseTransform):
    """Apply :func:`filter_boxes` to ``results['proposals']``.

    Required keys: ``proposals`` (``(N, 4)`` raw ``xywh`` boxes) and, only when
    there are no proposals, ``img`` or ``img_shape`` (for the whole-image
    box). Added key: ``kept_boxes`` (``(K, 4)`` int64 ``xywh``).

    With the image (or its shape) at hand the proposals are first fitted to
    it: a box partly outside is clipped, one wholly outside or of zero area is
    dropped, counted (``num_dropped_boxes``, this process) and reported in a
    warning naming the image. Proposals mined on the same decoded image are
    always inside, so this changes nothing for them. If none is left, the
    whole-image box is kept.

    Args:
        min_size: Minimum box width and height (96 in the paper).
        max_ratio: Maximum aspect ratio (3).
        max_iou: Greedy de-duplication IoU threshold (0.5).
        topk: Number of boxes kept per image (100).
    """

    def __init__(self,
                 min_size: Optional[float] = 96,
                 max_ratio: Optional[float] = 3.0,
                 max_iou: Optional[float] = 0.5,
                 topk: Optional[int] = 100) -> None:
        self.min_size = min_size
        self.max_ratio = max_ratio
        self.max_iou = max_iou
        self.topk = topk
        self.num_dropped_boxes = 0

    def transform(self, results: dict) -> dict:
        if 'proposals' not in results:
            raise KeyError('FilterBoxes needs results["proposals"] (raw xywh boxes) for '
                           f'image {results.get("img_path", "?")}')
        raw = np.asarray(results['proposals']).reshape(-1, 4)
        proposals, dropped = fit_boxes(type(self).__name__, results, raw, self.num_dropped_boxes)
        self.num_dropped_boxes += dropped
        if len(proposals) == 0:
            shape = image_shape(results)
            if shape is None:
                raise KeyError('FilterBoxes: no proposals and no img/img_shape to make '
                               f'the whole-image box for {results.get("img_path", "?")}')
            kept = np.array([[0, 0, shape[1], shape[0]]], dtype=np.int64)
        else:
            kept = filter_boxes(proposals, self.min_size, self.max_ratio, self.max_iou, self.topk).astype(np.int64)
        results['kept_boxes'] = kept
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_size={self.min_size}, '
                f'max_ratio={self.max_ratio}, max_iou={self.max_iou}, '
                f'topk={self.topk})')
