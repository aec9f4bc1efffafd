"""Drawing the synthetic scenes: colours, clutter marks, and placing and painting objects with their ground truth."""
import colorsys
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .categories import _CATEGORY_DEFS, _SHAPES, _Category, _texture

# Sub-pixel precision for cv2 polygon drawing (coordinates are multiplied by 2**_SHIFT).
_SHIFT = 4


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([b, g, r], dtype=np.float32) * 255.0


def _fill(mask: np.ndarray, polys: Sequence[np.ndarray], value: int) -> None:
    pts = [np.round(p * (1 << _SHIFT)).astype(np.int32) for p in polys]
    cv2.fillPoly(mask, pts, value, lineType=cv2.LINE_8, shift=_SHIFT)


def _draw_distractor(rng: np.random.Generator, img: np.ndarray, w: int, h: int, side: int) -> None:
    """One small clutter mark of a random colour (stroke, blob, scribble or speck), in place."""
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    kind = rng.integers(0, 4)
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    if kind == 0:  # stroke
        ln = rng.uniform(0.04, 0.2) * side
        a = rng.uniform(0, 2 * np.pi)
        p1 = (int(cx + ln * math.cos(a)), int(cy + ln * math.sin(a)))
        cv2.line(img, (cx, cy), p1, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    elif kind == 1:  # blob
        ax = (max(1, int(rng.uniform(0.01, 0.05) * side)), max(1, int(rng.uniform(0.01, 0.05) * side)))
        cv2.ellipse(img, (cx, cy), ax, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    elif kind == 2:  # scribble
        n = int(rng.integers(3, 6))
        pts = np.array([cx, cy]) + np.cumsum(rng.normal(0, 0.03 * side, (n, 2)), axis=0)
        cv2.polylines(img, [pts.astype(np.int32)], False, color, 1, cv2.LINE_AA)
    else:  # small speck rectangle
        s = max(1, int(rng.uniform(0.005, 0.03) * side))
        cv2.rectangle(img, (cx, cy), (cx + s, cy + int(rng.integers(1, s + 2))), color, -1)


def _gradient(c0: np.ndarray, c1: np.ndarray, ang: float, w: int, h: int) -> np.ndarray:
    """``(h, w, 3)`` float32 linear blend from ``c0`` to ``c1`` along direction ``ang``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang)
    t = ((t - t.min()) / max(float(t.max() - t.min()), 1e-6))[..., None]
    return c0 * (1 - t) + c1 * t


@dataclass
class _Placement:
    """Where one object goes: its size, aspect, rotation, centre, bounding window and mask."""

    s: float
    aspect: float
    rot: np.ndarray
    cx: float
    cy: float
    x0: int
    y0: int
    x1: int
    y1: int
    mask: np.ndarray  # bool, (y1 - y0, x1 - x0)
    area: int
    hidden: np.ndarray  # pixels of each earlier object this one would cover


def _place_object(rng: np.random.Generator, cat: _Category, w: int, h: int, log_scale: Tuple[float,
                                                                                             float], owner: np.ndarray,
                  visible: List[int], full_area: List[int], max_occlusion: float) -> Optional[_Placement]:
    """Up to 20 random placements of one object; the first that fits the image and keeps at least
    ``1 - max_occlusion`` of every earlier object visible, else ``None``."""
    side = min(w, h)
    fills, holes = _SHAPES[cat.shape]
    for _attempt in range(20):
        s = math.exp(rng.uniform(*log_scale)) * side
        aspect = rng.uniform(*cat.aspect)
        theta = rng.uniform(0, 2 * np.pi)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        lin = rot @ np.diag([s, s * aspect])
        ext = np.abs(lin) @ np.array([0.5, 0.5])  # half-extent of the rotated unit box
        if 2 * ext[0] >= w - 2 or 2 * ext[1] >= h - 2:
            continue
        cx = rng.uniform(ext[0] + 1, w - 1 - ext[0])
        cy = rng.uniform(ext[1] + 1, h - 1 - ext[1])
        x0, y0 = int(math.floor(cx - ext[0])), int(math.floor(cy - ext[1]))
        x1, y1 = int(math.ceil(cx + ext[0])) + 1, int(math.ceil(cy + ext[1])) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        off = np.array([cx - x0, cy - y0])
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        _fill(mask, [p @ lin.T + off for p in fills], 1)
        if holes:
            _fill(mask, [p @ lin.T + off for p in holes], 0)
        m = mask.astype(bool)
        area = int(m.sum())
        if area < 16:
            continue
        below = owner[y0:y1, x0:x1][m]
        hidden = np.bincount(below[below >= 0], minlength=len(visible))
        # An earlier object must keep at least (1 - max_occlusion) of its full area visible.
        if all(visible[j] - hid >= (1.0 - max_occlusion) * full_area[j] for j, hid in enumerate(hidden) if hid):
            return _Placement(s, aspect, rot, cx, cy, x0, y0, x1, y1, m, area, hidden)
    return None


def _paint_object(rng: np.random.Generator, img: np.ndarray, cat: _Category, p: _Placement,
                  colour_cue: bool) -> List[float]:
    """Paint a placed object into the float image (texture, colours, lighting); its ``xywh`` box."""
    # Texture in object-normalised coordinates, so it scales and rotates with the object.
    yy, xx = np.mgrid[p.y0:p.y1, p.x0:p.x1].astype(np.float32)
    dx, dy = xx - p.cx, yy - p.cy
    u = (dx * p.rot[0, 0] + dy * p.rot[1, 0]) / p.s
    v = (dx * p.rot[0, 1] + dy * p.rot[1, 1]) / p.s
    # One draw either way, so both settings place the same objects in the same images.
    hue = cat.hue + rng.uniform(-0.02, 0.02) if colour_cue else rng.uniform(0.0, 1.0)
    primary = _hsv_to_bgr(hue, rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0))
    secondary = _hsv_to_bgr(hue, rng.uniform(0.6, 1.0), rng.uniform(0.2, 0.4))
    pattern = _texture(cat.texture, u, v, p.aspect)
    patch = np.where(pattern[..., None], secondary, primary)
    m = p.mask
    if cat.texture == 'outline':
        edge = m & ~cv2.erode(
            m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(round(0.05 * p.s)))).astype(bool)
        patch[edge] = secondary
    # Soft directional lighting so that shade varies within and across objects.
    light_dir = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + rng.uniform(0.0, 0.35) * (u * math.cos(light_dir) + v * math.sin(light_dir))
    patch = patch * shade[..., None]
    img[p.y0:p.y1, p.x0:p.x1][m] = patch[m]
    ys, xs = np.nonzero(m)
    return [
        float(p.x0 + xs.min()),
        float(p.y0 + ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1)
    ]


def _draw_objects(rng: np.random.Generator,
                  img: np.ndarray,
                  cat_indices: Callable[[], int],
                  n_try: int,
                  scale_range: Tuple[float, float],
                  max_occlusion: float,
                  min_visible: float,
                  colour_cue: bool,
                  masks: bool = False) -> List[dict]:
    """Place and paint ``n_try`` objects back to front (``cat_indices()`` draws each one's category);
    the annotations of those with at least ``min_visible`` of themselves showing at the end, with
    ``masks`` also their visible pixels as a COCO ``segmentation`` (:func:`_visible_rle`)."""
    h, w = img.shape[:2]
    owner = np.full((h, w), -1, dtype=np.int16)  # index of the object that shows at each pixel
    objects: List[dict] = []
    full_area: List[int] = []  # pixels of each object's full extent
    visible: List[int] = []  # pixels of each object still showing
    log_scale = (math.log(scale_range[0]), math.log(scale_range[1]))
    for _ in range(n_try):
        cat_idx = cat_indices()
        cat = _CATEGORY_DEFS[cat_idx]
        placed = _place_object(rng, cat, w, h, log_scale, owner, visible, full_area, max_occlusion)
        if placed is None:
            continue
        for j, hid in enumerate(placed.hidden):
            visible[j] -= int(hid)
        bbox = _paint_object(rng, img, cat, placed, colour_cue)
        owner[placed.y0:placed.y1, placed.x0:placed.x1][placed.mask] = len(objects)
        objects.append(dict(category_id=cat_idx + 1, bbox=bbox))
        full_area.append(placed.area)
        visible.append(placed.area)
    kept = [j for j in range(len(objects)) if visible[j] >= min_visible * full_area[j]]
    out = [dict(objects[j], area=float(visible[j])) for j in kept]
    if masks:
        for j, obj in zip(kept, out):
            obj['segmentation'] = _visible_rle(owner == j)
    return out


def _visible_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a boolean ``(h, w)`` mask, ``counts`` as str so that it goes into JSON."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return dict(size=[int(v) for v in rle['size']], counts=rle['counts'].decode('ascii'))
