"""Drawing ORL's mined data: an image's proposals, and an image pair with its mined RoI pairs.

Images are BGR uint8 arrays (OpenCV / mmcv convention); boxes are ``[x, y, w, h]`` as in the
stores and official files. Everything draws with OpenCV into new arrays (no display), and
:func:`save_image` writes PNGs atomically.
"""
from __future__ import annotations

import colorsys
import json
import os
import os.path as osp
from collections import defaultdict
from typing import Optional, Sequence

import cv2
import numpy as np

__all__ = [
    'palette', 'draw_boxes', 'draw_proposals', 'draw_pairs', 'save_image', 'find_image', 'load_gt_boxes', 'RAW_COLOR',
    'FILTERED_COLOR', 'GT_COLOR'
]

RAW_COLOR = (235, 170, 60)  # BGR light blue: raw selective-search boxes
FILTERED_COLOR = (40, 220, 40)  # green: boxes kept by ORL's filter
GT_COLOR = (40, 40, 235)  # red: ground truth, when known


def palette(n: int) -> list:
    """``n`` well-separated saturated BGR colours (golden-ratio hue steps)."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


def _as_bgr(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an HxWx3 BGR image, got shape {img.shape}')
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img).copy()


def _xyxy(box: Sequence[float], dx: int = 0) -> tuple:
    x, y, w, h = (int(round(float(v))) for v in box[:4])
    return (x + dx, y), (x + dx + max(w - 1, 0), y + max(h - 1, 0))


def _label(img: np.ndarray, text: str, org: tuple, color: tuple, scale: float = 0.4) -> None:
    """Text with a dark background so it reads on any image."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = int(org[0]), int(org[1])
    x = min(max(x, 0), max(img.shape[1] - tw - 2, 0))
    y = min(max(y, th + 2), img.shape[0] - base)
    cv2.rectangle(img, (x, y - th - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def draw_boxes(img: np.ndarray, boxes: np.ndarray, color: tuple, thickness: int = 1, dx: int = 0) -> np.ndarray:
    """Draw xywh ``boxes`` on ``img`` in place (shifted right by ``dx``); returns ``img``."""
    for box in np.asarray(boxes).reshape(-1, 4):
        p1, p2 = _xyxy(box, dx)
        cv2.rectangle(img, p1, p2, color, thickness, cv2.LINE_AA)
    return img


def draw_proposals(img: np.ndarray,
                   raw_boxes: Optional[np.ndarray] = None,
                   filtered_boxes: Optional[np.ndarray] = None,
                   gt_boxes: Optional[np.ndarray] = None,
                   *,
                   max_raw: Optional[int] = None,
                   raw_color: tuple = RAW_COLOR,
                   filtered_color: tuple = FILTERED_COLOR,
                   gt_color: tuple = GT_COLOR,
                   legend: bool = True) -> np.ndarray:
    """An image with its raw proposals (thin), ORL-filtered boxes (thick) and ground truth.

    Returns a new BGR image of the input's size.
    """
    out = _as_bgr(img)
    lines = []
    if raw_boxes is not None:
        raw = np.asarray(raw_boxes).reshape(-1, 4)
        shown = raw if max_raw is None else raw[:max_raw]
        draw_boxes(out, shown, raw_color, 1)
        lines.append((f'raw {len(raw)}' + (f' (first {len(shown)} shown)' if len(shown) < len(raw) else ''), raw_color))
    if gt_boxes is not None:
        gt = np.asarray(gt_boxes).reshape(-1, 4)
        draw_boxes(out, gt, gt_color, 2)
        lines.append((f'gt {len(gt)}', gt_color))
    if filtered_boxes is not None:
        kept = np.asarray(filtered_boxes).reshape(-1, 4)
        draw_boxes(out, kept, filtered_color, 2)
        lines.append((f'kept {len(kept)}', filtered_color))
    if legend:
        for r, (text, color) in enumerate(lines):
            _label(out, text, (2, 14 + 14 * r), color)
    return out


def draw_pairs(query_img: np.ndarray,
               neighbour_img: np.ndarray,
               pairs: np.ndarray,
               *,
               query_boxes: Optional[np.ndarray] = None,
               neighbour_boxes: Optional[np.ndarray] = None,
               max_pairs: Optional[int] = None,
               gap: int = 10,
               lines: bool = True,
               legend: bool = True,
               title: Optional[str] = None) -> np.ndarray:
    """Query (left) and neighbour (right) side by side; pair ``p`` is drawn in colour ``p`` in
    both images, joined by a line between the box centres.

    Args:
        pairs: (P, 8) ``[qx, qy, qw, qh, nx, ny, nw, nh]``, best first (as mined).
        query_boxes / neighbour_boxes: optional kept boxes drawn thin grey underneath.
        max_pairs: draw only the first ``max_pairs`` pairs.

    Returns:
        BGR image of height ``max(hq, hn)`` and width ``wq + gap + wn`` (no resizing, so box
        coordinates stay exact).
    """
    q, n = _as_bgr(query_img), _as_bgr(neighbour_img)
    hq, wq = q.shape[:2]
    hn, wn = n.shape[:2]
    canvas = np.full((max(hq, hn), wq + gap + wn, 3), 255, np.uint8)
    canvas[:hq, :wq] = q
    canvas[:hn, wq + gap:] = n
    dx = wq + gap
    grey = (170, 170, 170)
    if query_boxes is not None:
        draw_boxes(canvas, query_boxes, grey, 1)
    if neighbour_boxes is not None:
        draw_boxes(canvas, neighbour_boxes, grey, 1, dx=dx)
    pr = np.asarray(pairs).reshape(-1, 8)
    shown = pr if max_pairs is None else pr[:max_pairs]
    colors = palette(len(shown))
    for p, (row, color) in enumerate(zip(shown, colors)):
        draw_boxes(canvas, row[:4], color, 2)
        draw_boxes(canvas, row[4:], color, 2, dx=dx)
        if lines:
            qx, qy, qw, qh = (float(v) for v in row[:4])
            nx, ny, nw, nh = (float(v) for v in row[4:])
            cv2.line(canvas, (int(qx + qw / 2), int(qy + qh / 2)), (int(nx + nw / 2) + dx, int(ny + nh / 2)), color, 1,
                     cv2.LINE_AA)
        _label(canvas, str(p), (int(row[0]) + 2, int(row[1]) + 12), color, 0.35)
        _label(canvas, str(p), (int(row[4]) + dx + 2, int(row[5]) + 12), color, 0.35)
    if legend:
        text = f'{len(pr)} pairs' + (f' (first {len(shown)} shown)' if len(shown) < len(pr) else '')
        if title:
            text = f'{title}: {text}'
        _label(canvas, text, (2, 14), (255, 255, 255))
    return canvas


def save_image(img: np.ndarray, path: str) -> str:
    """Write ``img`` (BGR) to ``path`` atomically; the extension picks the format (.png)."""
    path = osp.abspath(path)
    os.makedirs(osp.dirname(path), exist_ok=True)
    ext = osp.splitext(path)[1] or '.png'
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise RuntimeError(f'OpenCV could not encode an image as {ext} for {path}')
    tmp = f'{path}.tmp-{os.getpid()}{ext}'
    with open(tmp, 'wb') as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)
    return path


def find_image(file_name: str, roots: Sequence[str]) -> str:
    """First ``root/file_name`` that exists (COCO+ spreads images over two folders)."""
    tried = []
    for root in roots or ['']:
        p = osp.join(root, file_name)
        if osp.isfile(p):
            return p
        tried.append(p)
    raise FileNotFoundError(f'image {file_name!r} not found; tried {tried} (set --img-root)')


def load_gt_boxes(ann_files: Sequence[str]) -> dict:
    """``{image_id: (n, 4) xywh}`` of the non-crowd annotations in COCO-format JSON(s)."""
    out = defaultdict(list)
    for ann in ann_files:
        if not osp.isfile(ann):
            continue
        with open(ann, encoding='utf-8') as f:
            data = json.load(f)
        for a in data.get('annotations', []):
            if not a.get('iscrowd', 0) and 'bbox' in a:
                out[a['image_id']].append(a['bbox'])
    return {k: np.asarray(v, np.float32).reshape(-1, 4) for k, v in out.items()}
