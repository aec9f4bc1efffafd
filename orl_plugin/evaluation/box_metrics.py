"""Box helpers shared by the mining metrics: IoU, GT recall and GT matching, on boxes or object masks.

Mined boxes are ``[x, y, w, h]`` (the official ORL files' convention); ground truth from ``SceneImageDataset`` is
``[x1, y1, x2, y2]`` float32. Overlaps are mmdet's ``bbox_overlaps`` (areas without the legacy ``+1``).
"""
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``[x, y, w, h]`` -> float32 ``[x1, y1, x2, y2]``."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


# When a box is *on* a GT object. 'iou': IoU with the object's box >= the threshold (the detection criterion).
# 'inside': the box lies mostly inside the object: the object's pixels inside the box over the *box's own* area
# >= the threshold, counted on the object's visible mask when the image has masks (ObjectMasks), else on its box
# (the *box rule*: a box in the empty corner of a star's box counts). ORL's boxes are often object parts, which
# the IoU criterion misses.
OBJECT_CRITERIA = ('iou', 'inside')


def box_iou(boxes1_xyxy: np.ndarray, boxes2_xyxy: np.ndarray, mode: str = 'iou') -> np.ndarray:
    """Overlap matrix ``(N, M)`` of two sets of ``[x1, y1, x2, y2]`` boxes: IoU, or with
    ``mode='iof'`` the intersection over the area of each box of the *first* set."""
    from mmdet.evaluation.functional import bbox_overlaps  # lazy: mmdet is slow to import
    b1 = np.asarray(boxes1_xyxy, dtype=np.float32).reshape(-1, 4)
    b2 = np.asarray(boxes2_xyxy, dtype=np.float32).reshape(-1, 4)
    if len(b1) == 0 or len(b2) == 0:
        return np.zeros((len(b1), len(b2)), dtype=np.float32)
    return bbox_overlaps(b1, b2, mode=mode).astype(np.float32)


def segmentation_to_rle(segm: Union[list, dict], height: int, width: int) -> dict:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as one compressed RLE,
    the way mmdet's ``LoadAnnotations._poly2mask`` reads it; ``height``/``width`` size the
    polygons' raster (an RLE carries its own size)."""
    from pycocotools import mask as mask_utils
    if isinstance(segm, list):
        polys = [p for p in segm if len(p) >= 6]  # pycocotools needs 3 points per polygon
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width)) if polys else \
            mask_utils.encode(np.zeros((height, width, 1), np.uint8, order='F'))[0]
    if isinstance(segm.get('counts'), list):
        return mask_utils.frPyObjects(segm, *segm['size'])
    counts = segm['counts']
    return dict(size=list(segm['size']), counts=counts.encode('ascii') if isinstance(counts, str) else counts)


class ObjectMasks:
    """The visible masks of one image's GT objects, for "how much of object g lies in box b".

    Each mask is decoded once and kept as the integral image of its pixels' bounding window, so
    that any number of boxes costs four look-ups each (a 256 px image with five objects: well
    under a millisecond).

    Args:
        segmentations: one COCO ``segmentation`` per GT object (polygons, or RLE with ``counts``
            as list, bytes or str), aligned with the image's GT boxes.
        height, width: the image size, needed for polygons; without it polygons are rasterised on
            a canvas that just holds them (the pixels outside hold no object anyway).
    """

    def __init__(self, segmentations: Sequence[Any], height: Optional[int] = None, width: Optional[int] = None) -> None:
        from pycocotools import mask as mask_utils
        self.windows: List[Tuple[int, int]] = []  # (x0, y0) of each integral image
        self.integrals: List[np.ndarray] = []  # (h + 1, w + 1) int64 cumulative pixel counts
        for segm in segmentations:
            if isinstance(segm, list) and (height is None or width is None):
                pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in segm] or [np.zeros((1, 2))])
                h, w = int(np.ceil(pts[:, 1].max())) + 1, int(np.ceil(pts[:, 0].max())) + 1
            else:
                h, w = (int(height or 0), int(width or 0))
            rle = segmentation_to_rle(segm, h, w)
            x, y, bw, bh = (int(v) for v in mask_utils.toBbox(rle))
            window = mask_utils.decode(rle)[y:y + bh, x:x + bw]
            integral = np.zeros((window.shape[0] + 1, window.shape[1] + 1), np.int64)
            np.cumsum(np.cumsum(window, axis=0, dtype=np.int64), axis=1, out=integral[1:, 1:])
            self.windows.append((x, y))
            self.integrals.append(integral)

    def __len__(self) -> int:
        return len(self.integrals)

    def inside_fraction(self, boxes_xywh: np.ndarray) -> np.ndarray:
        """``(B, G)`` float: the pixels of object g inside box b over box b's area. Boxes are
        rounded to whole pixels; a box's part outside the image counts as object-free."""
        b = np.rint(np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)).astype(np.int64)
        x1, y1 = b[:, 0], b[:, 1]
        x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
        area = np.maximum(b[:, 2] * b[:, 3], 1).astype(np.float64)
        out = np.zeros((len(b), len(self)), dtype=np.float64)
        for g, ((wx, wy), integral) in enumerate(zip(self.windows, self.integrals)):
            hh, ww = integral.shape[0] - 1, integral.shape[1] - 1
            cx1, cx2 = np.clip(x1 - wx, 0, ww), np.clip(x2 - wx, 0, ww)
            cy1, cy2 = np.clip(y1 - wy, 0, hh), np.clip(y2 - wy, 0, hh)
            out[:, g] = (integral[cy2, cx2] - integral[cy1, cx2] - integral[cy2, cx1] + integral[cy1, cx1]) / area
        return out


def object_masks(segmentations: Optional[Sequence[Any]],
                 height: Optional[int] = None,
                 width: Optional[int] = None) -> Optional[ObjectMasks]:
    """:class:`ObjectMasks` of an image's ``gt_masks``, or ``None`` when it has none (the box rule)."""
    return None if segmentations is None else ObjectMasks(segmentations, height, width)


def on_object(boxes_xywh: np.ndarray,
              gt_xyxy: np.ndarray,
              criterion: str = 'iou',
              thr: float = 0.5,
              masks: Optional[ObjectMasks] = None) -> np.ndarray:
    """``(B, G)`` bool: box b is on GT object g by ``criterion`` (``'iou'`` or ``'inside'``, see
    :data:`OBJECT_CRITERIA`) at threshold ``thr``; ``'inside'`` counts the objects' pixels when
    ``masks`` (aligned with ``gt_xyxy``) is given, else their boxes."""
    if criterion not in OBJECT_CRITERIA:
        raise ValueError(f'criterion must be one of {OBJECT_CRITERIA}, got {criterion!r}')
    gt = np.asarray(gt_xyxy, dtype=np.float32).reshape(-1, 4)
    if criterion == 'inside' and masks is not None:
        if len(masks) != len(gt):
            raise ValueError(f'on_object: {len(masks)} masks for {len(gt)} GT boxes; they must be aligned')
        return masks.inside_fraction(boxes_xywh) >= thr
    return box_iou(xywh_to_xyxy(boxes_xywh), gt, mode='iou' if criterion == 'iou' else 'iof') >= thr


def gt_recall(proposals_xywh: np.ndarray, gt_xyxy: np.ndarray, iou_thr: float = 0.5) -> Tuple[int, int]:
    """How many GT boxes have a proposal with IoU >= ``iou_thr``: ``(recalled, num_gt)``."""
    gt = np.asarray(gt_xyxy, dtype=np.float32).reshape(-1, 4)
    if len(gt) == 0:
        return 0, 0
    ious = box_iou(xywh_to_xyxy(proposals_xywh), gt)
    if ious.shape[0] == 0:
        return 0, len(gt)
    return int((ious.max(axis=0) >= iou_thr).sum()), len(gt)


def matched_gt_labels(boxes_xywh: np.ndarray,
                      gt_xyxy: np.ndarray,
                      gt_labels: np.ndarray,
                      iou_thr: float = 0.5,
                      criterion: str = 'iou',
                      masks: Optional[ObjectMasks] = None) -> np.ndarray:
    """Category match mask ``(B, C)``: box b is on (:func:`on_object`, ``criterion`` at
    ``iou_thr``, with the objects' ``masks`` if given) a GT object of category c.

    ``C = max(gt_labels) + 1``; use it to ask "do two boxes match a GT object of the same
    category": ``(m1[i] & m2[j]).any()``.
    """
    labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    num_cls = int(labels.max()) + 1 if labels.size else 0
    b = np.asarray(boxes_xywh).reshape(-1, 4)
    out = np.zeros((len(b), num_cls), dtype=bool)
    if len(b) == 0 or labels.size == 0:
        return out
    hit = on_object(b, gt_xyxy, criterion, iou_thr, masks)  # (B, G)
    for g, c in enumerate(labels):
        out[:, c] |= hit[:, g]
    return out
