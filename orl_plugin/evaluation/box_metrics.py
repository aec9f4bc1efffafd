"""Box helpers shared by the mining metrics: IoU, GT recall and GT matching.

Mined boxes are ``[x, y, w, h]`` (the official ORL files' convention); ground truth from
``SceneImageDataset`` is ``[x1, y1, x2, y2]`` float32. Overlaps are mmdet's ``bbox_overlaps``
(areas without the legacy ``+1``).

A box is *on* a GT object by one of two criteria (:data:`OBJECT_CRITERIA`):

- ``'iou'``: IoU with the object's box >= the threshold (the detection criterion);
- ``'inside'``: the box lies mostly inside the object's box: intersection over the *box's own*
  area >= the threshold. ORL's boxes are often object parts, which the IoU criterion misses.
"""
from typing import Tuple

import numpy as np


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``[x, y, w, h]`` -> float32 ``[x1, y1, x2, y2]``."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


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


def on_object(boxes_xywh: np.ndarray, gt_xyxy: np.ndarray, criterion: str = 'iou', thr: float = 0.5) -> np.ndarray:
    """``(B, G)`` bool: box b is on GT object g by ``criterion`` (``'iou'`` or ``'inside'``, see
    the module docstring) at threshold ``thr``."""
    if criterion not in OBJECT_CRITERIA:
        raise ValueError(f'criterion must be one of {OBJECT_CRITERIA}, got {criterion!r}')
    b = xywh_to_xyxy(boxes_xywh)
    return box_iou(b, gt_xyxy, mode='iou' if criterion == 'iou' else 'iof') >= thr


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
                      criterion: str = 'iou') -> np.ndarray:
    """Category match mask ``(B, C)``: box b is on (:func:`on_object`, ``criterion`` at
    ``iou_thr``) a GT object of category c.

    ``C = max(gt_labels) + 1``; use it to ask "do two boxes match a GT object of the same
    category": ``(m1[i] & m2[j]).any()``.
    """
    labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    num_cls = int(labels.max()) + 1 if labels.size else 0
    b = np.asarray(boxes_xywh).reshape(-1, 4)
    out = np.zeros((len(b), num_cls), dtype=bool)
    if len(b) == 0 or labels.size == 0:
        return out
    hit = on_object(b, gt_xyxy, criterion, iou_thr)  # (B, G)
    for g, c in enumerate(labels):
        out[:, c] |= hit[:, g]
    return out
