"""Synthetic scene images with COCO-format ground truth, for CPU demos, tests and the yardstick.

Two generator versions share the eight object categories. Every category has its own shape and its
own texture, so that a category is recognisable across images (scale, rotation, colour, shade,
lighting and occlusion vary) and categories are distinguishable from each other.

- **Version 2** (the default): scenes where ORL's premise holds, that similar scenes share objects.
  Every image belongs to one *scene type*; a type has a background family (a hue and a
  low-contrast pattern) and a small set of categories, neighbouring types sharing some
  (:func:`make_scene_types`). An image holds 2-6 salient objects (saturated colours on a muted
  background) of 15-50 % of the image side, drawn mostly from its type's categories, and a few
  distractor marks. Every option (types, categories per type, objects, sizes, off-type objects,
  clutter, background contrast) is an argument of :func:`make_synthetic_scenes`. The image records
  carry ``scene_type`` and the JSON a ``scene_types`` list, so figures can be split by type.
- **Version 1** (``version=1``): the original scenes, byte-identical to what the generator wrote
  before version 2: a cluttered background (colour gradient, low-frequency colour noise, pixel noise
  and 15-45 small distractor strokes and blobs of random colours) with 3-6 objects of any category.
  Every image holds most categories and most selective-search boxes fall on clutter, so image-level
  neighbours carry no category information there.

Colour is random per object by default. With ``colour_cue=True`` every category also gets its own
colour family; that makes the categories separable by colour alone, which even a randomly initialised
ConvNet's pooled features do (object kNN probe: 0.90 top-1 at random init), so pre-training has
little left to show; BYOL's colour jitter even removes the cue (0.81 after 30 CPU epochs).

Ground truth: every annotated object has the box of its full extent (also where another object
covers part of it), ``iscrowd=0`` and ``area`` = its visible pixel count. Placement is rejected when
it would hide more than ``max_occlusion`` of an earlier object, and any object with less than
half of itself visible at the end is left out of the annotations. Every box lies inside its image.
Version 2 also writes each object's *visible* pixels as its ``segmentation`` (COCO compressed RLE;
its pixel count is ``area``), so that "a box lies mostly inside an object" can be judged on the
object's pixels rather than its box.

Determinism: image ``i`` is drawn with its own ``numpy.random.Generator`` seeded by
``SeedSequence([seed, i])``, so the output is byte-identical for a seed whatever the number of worker
processes; no global random state is used.
"""
from __future__ import annotations

import colorsys
import json
import math
import multiprocessing
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from orl_plugin.store import atomic_open

__all__ = ['CATEGORIES', 'SceneType', 'make_scene_types', 'make_synthetic_scenes', 'render_scene', 'render_scene_v2']

# Sub-pixel precision for cv2 polygon drawing (coordinates are multiplied by 2**_SHIFT).
_SHIFT = 4
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class _Category:
    """One object category: a shape, a texture and a colour family (HSV hue in [0, 1), used only
    with ``colour_cue=True``)."""

    name: str
    shape: str
    hue: float
    texture: str
    aspect: Tuple[float, float]  # height/width range of the unrotated shape


# Eight hues spread around the colour wheel, one per category; shapes and textures differ too, so
# a category is identifiable from either cue alone.
_CATEGORY_DEFS: Tuple[_Category, ...] = (
    _Category('striped_disc', 'disc', 0.00, 'stripes', (0.9, 1.1)),
    _Category('checker_square', 'square', 0.62, 'checker', (0.85, 1.15)),
    _Category('dotted_triangle', 'triangle', 0.33, 'dots', (0.85, 1.15)),
    _Category('outlined_star', 'star', 0.15, 'outline', (0.9, 1.1)),
    _Category('segmented_ring', 'ring', 0.80, 'segments', (0.9, 1.1)),
    _Category('grid_cross', 'cross', 0.50, 'grid', (0.85, 1.15)),
    _Category('banded_ellipse', 'ellipse', 0.07, 'bands', (0.45, 0.6)),
    _Category('nut_hexagon', 'hexagon', 0.91, 'nut', (0.9, 1.1)),
)

#: COCO ``categories`` list (ids start at 1, in this order).
CATEGORIES: List[dict] = [dict(id=i + 1, name=c.name, supercategory='shape') for i, c in enumerate(_CATEGORY_DEFS)]


def _circle(n: int = 48, r: float = 0.5) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _regular(n: int, r: float = 0.5, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2.0 * np.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(points: int = 5, r_out: float = 0.5, r_in: float = 0.21) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float = 0.17) -> np.ndarray:
    a, b = arm, 0.5
    return np.array([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
                     (-a, -a)],
                    dtype=np.float64)


def _triangle() -> np.ndarray:
    # Equilateral, scaled so that its bounding box spans [-0.5, 0.5] in both axes.
    tri = _regular(3, 1.0)
    tri -= (tri.max(0) + tri.min(0)) / 2
    return tri / (tri.max(0) - tri.min(0))


# Unit shapes: (filled polygons, hole polygons), in local coordinates spanning about [-0.5, 0.5].
_SHAPES: Dict[str, Tuple[List[np.ndarray], List[np.ndarray]]] = {
    'disc': ([_circle()], []),
    'square': ([np.array([(-.5, -.5), (.5, -.5), (.5, .5), (-.5, .5)])], []),
    'triangle': ([_triangle()], []),
    'star': ([_star()], []),
    'ring': ([_circle()], [_circle(r=0.27)]),
    'cross': ([_cross()], []),
    'ellipse': ([_circle()], []),
    'hexagon': ([_regular(6, 0.5, 0.0)], []),
}


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([b, g, r], dtype=np.float32) * 255.0


def _texture(kind: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Boolean 'secondary colour' pattern in object-normalised coordinates (scale-invariant)."""
    if kind == 'stripes':
        return np.sin(2 * np.pi * 4.5 * u) > 0
    if kind == 'checker':
        return ((np.floor(4 * (u + 0.5)) + np.floor(4 * (v + 0.5))) % 2) == 1
    if kind == 'dots':
        fu, fv = (u * 6) % 1.0 - 0.5, (v * 6) % 1.0 - 0.5
        return fu * fu + fv * fv < 0.09
    if kind == 'segments':
        return (np.floor((np.arctan2(v, u) + np.pi) / (2 * np.pi) * 10) % 2) == 1
    if kind == 'grid':
        return (np.abs((u * 6) % 1.0 - 0.5) < 0.14) | (np.abs((v * 6) % 1.0 - 0.5) < 0.14)
    if kind == 'bands':
        r = np.sqrt(u * u + (v / aspect)**2)
        return np.sin(2 * np.pi * 4.0 * r) > 0
    if kind == 'nut':
        # A concentric inner hexagon (the shape's own norm: distance along its apothem directions).
        d = np.max(
            np.stack([np.abs(u * math.cos(a) + v * math.sin(a)) for a in np.deg2rad([30.0, 90.0, 150.0])]), axis=0)
        return d < 0.45 * 0.5 * math.cos(math.pi / 6)
    if kind == 'outline':
        return np.zeros_like(u, dtype=bool)  # solid fill; the dark outline is drawn on the mask edge
    raise ValueError(f'unknown texture {kind!r}')


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


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Version-1 background: gradient + low-frequency colour noise + pixel noise + many distractors."""
    c0 = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.9))
    c1 = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.9))
    img = _gradient(c0, c1, rng.uniform(0, 2 * np.pi), w, h)
    gh, gw = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    low = rng.normal(0.0, 1.0, (gh, gw, 3)).astype(np.float32)
    img += cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(10, 35)
    img += rng.normal(0.0, rng.uniform(2, 8), (h, w, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    side = min(w, h)
    for _ in range(int(rng.integers(15, 45))):
        _draw_distractor(rng, img, w, h, side)
    return img


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


def render_scene(rng: np.random.Generator,
                 img_size: Tuple[int, int] = (256, 256),
                 num_objects: Tuple[int, int] = (3, 6),
                 scale_range: Tuple[float, float] = (0.15, 0.6),
                 max_occlusion: float = 0.4,
                 min_visible: float = 0.5,
                 colour_cue: bool = False) -> Tuple[np.ndarray, List[dict]]:
    """Draw one version-1 scene (cluttered background, categories drawn uniformly).

    Args:
        rng: the image's own random generator.
        img_size: (width, height).
        num_objects: inclusive range of objects to try to place.
        scale_range: object size (longer side before rotation) as a fraction of the shorter image side.
        max_occlusion: reject a placement that would hide more than this fraction of an earlier object.
        min_visible: objects with a smaller visible fraction are left out of the annotations.
        colour_cue: draw each object's hue from its category's colour family instead of the whole
            colour wheel.

    Returns:
        The BGR uint8 image and a list of objects ``dict(category_id, bbox=[x, y, w, h], area)``,
        back to front.
    """
    w, h = img_size
    img = _background(rng, w, h).astype(np.float32)
    side = min(w, h)
    n_try = int(rng.integers(num_objects[0], num_objects[1] + 1))
    annotations = _draw_objects(rng, img, lambda: int(rng.integers(0, len(_CATEGORY_DEFS))), n_try, scale_range,
                                max_occlusion, min_visible, colour_cue)
    # A few thin strokes over everything: clutter that also crosses objects.
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        a, ln = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.2) * side
        cv2.line(img, p0, (int(p0[0] + ln * math.cos(a)), int(p0[1] + ln * math.sin(a))), color, 1, cv2.LINE_AA)
    img = np.clip(img.astype(np.float32) + rng.normal(0.0, 2.0, img.shape), 0, 255).astype(np.uint8)
    return img, annotations


# ------------------------------------------------------------------------------------------------
# Version 2: scene types
# ------------------------------------------------------------------------------------------------
#: Background patterns of the scene types' families, assigned to types in this order.
BACKGROUND_PATTERNS = ('plain', 'stripes', 'tiles', 'blotches')


@dataclass(frozen=True)
class SceneType:
    """A kind of scene: a background family (hue centre and pattern) and the object categories
    (0-based indices into :data:`CATEGORIES`) its images hold."""

    id: int  # 1-based, as written to the image records' ``scene_type``
    name: str
    categories: Tuple[int, ...]
    hue: float
    pattern: str

    def to_json(self) -> dict:
        return dict(
            id=self.id,
            name=self.name,
            category_ids=[c + 1 for c in self.categories],
            background=dict(hue=round(self.hue, 4), pattern=self.pattern))


def make_scene_types(num_types: int = 4, categories_per_type: int = 3) -> List[SceneType]:
    """Scene types on a ring over the categories: type ``t`` holds ``categories_per_type``
    consecutive categories starting at ``round(t * K / num_types)`` (``K`` = 8 categories, taken
    modulo ``K``), so neighbouring types share categories when ``categories_per_type`` exceeds the
    stride ``K / num_types`` (4 types of 3: each type shares one category with each of its two
    neighbours and none with the opposite type). Background hues are spread evenly around the
    colour wheel; patterns cycle through :data:`BACKGROUND_PATTERNS`."""
    k = len(_CATEGORY_DEFS)
    if num_types < 1:
        raise ValueError(f'scene_types must be >= 1, got {num_types}')
    if not 1 <= categories_per_type <= k:
        raise ValueError(f'categories_per_type must be in [1, {k}], got {categories_per_type}')
    types = []
    for t in range(num_types):
        start = int(round(t * k / num_types))
        cats = tuple(sorted({(start + j) % k for j in range(categories_per_type)}))
        pattern = BACKGROUND_PATTERNS[t % len(BACKGROUND_PATTERNS)]
        types.append(
            SceneType(
                id=t + 1,
                name=f'type{t + 1}_{pattern}',
                categories=cats,
                hue=(0.08 + t / num_types) % 1.0,
                pattern=pattern))
    return types


def _background_v2(rng: np.random.Generator, w: int, h: int, stype: SceneType, texture: float,
                   hue_spread: float) -> np.ndarray:
    """A background of ``stype``'s family: a gradient of two low-saturation colours near its hue and
    its pattern at low contrast (``texture`` scales the contrast; 0 leaves the gradient alone)."""
    hue = stype.hue + rng.uniform(-hue_spread, hue_spread)
    c0 = _hsv_to_bgr(hue, rng.uniform(0.15, 0.45), rng.uniform(0.45, 0.85))
    c1 = _hsv_to_bgr(hue + rng.uniform(-0.03, 0.03), rng.uniform(0.15, 0.45), rng.uniform(0.3, 0.7))
    img = _gradient(c0, c1, rng.uniform(0, 2 * np.pi), w, h)
    side = float(min(w, h))
    amp = texture * rng.uniform(6.0, 14.0)  # grey levels
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / side
    if stype.pattern == 'stripes':
        freq, ang = rng.uniform(3.0, 6.0), rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * freq * (xx * math.cos(ang) + yy * math.sin(ang)))
        img += (amp * wave)[..., None]
    elif stype.pattern == 'tiles':
        # Small tiles (10-16 per side): large ones would each be a background proposal.
        freq = rng.uniform(10.0, 16.0)
        line = (np.abs((xx * freq) % 1.0 - 0.5) > 0.42) | (np.abs((yy * freq) % 1.0 - 0.5) > 0.42)
        img -= (amp * line.astype(np.float32))[..., None]
    elif stype.pattern == 'blotches':
        gh, gw = int(rng.integers(3, 6)), int(rng.integers(3, 6))
        low = rng.normal(0.0, 1.0, (gh, gw)).astype(np.float32)
        img += (cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) * amp)[..., None]
    img += rng.normal(0.0, rng.uniform(1.0, 3.0), (h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_scene_v2(rng: np.random.Generator,
                    img_size: Tuple[int, int] = (256, 256),
                    types: Optional[Sequence[SceneType]] = None,
                    num_objects: Tuple[int, int] = (2, 6),
                    scale_range: Tuple[float, float] = (0.15, 0.5),
                    out_of_type: float = 0.1,
                    clutter: Tuple[int, int] = (0, 3),
                    background_texture: float = 1.0,
                    hue_spread: float = 0.05,
                    max_occlusion: float = 0.4,
                    min_visible: float = 0.5,
                    colour_cue: bool = False) -> Tuple[np.ndarray, List[dict], int]:
    """Draw one version-2 scene: a scene type, its background, its objects and a little clutter.

    Args:
        rng: the image's own random generator.
        img_size: (width, height).
        types: the scene types (default :func:`make_scene_types`); one is drawn uniformly.
        num_objects: inclusive range of objects to try to place.
        scale_range: object size (longer side before rotation) as a fraction of the shorter side.
        out_of_type: probability that an object's category is drawn from all categories rather
            than from its scene type's.
        clutter: inclusive range of small distractor marks drawn on the background.
        background_texture: contrast of the background pattern (1 = default, 0 = none).
        hue_spread: the background hue varies by up to this much around its type's hue.
        max_occlusion, min_visible, colour_cue: as :func:`render_scene`.

    Returns:
        The BGR uint8 image, its objects (as :func:`render_scene`, plus each one's visible mask as
        ``segmentation``, compressed RLE) and the 0-based index of its scene type in ``types``.
    """
    types = list(types) if types is not None else make_scene_types()
    w, h = img_size
    t = int(rng.integers(0, len(types)))
    stype = types[t]
    img = _background_v2(rng, w, h, stype, background_texture, hue_spread)
    side = min(w, h)
    for _ in range(int(rng.integers(clutter[0], clutter[1] + 1))):
        _draw_distractor(rng, img, w, h, side)
    img = img.astype(np.float32)

    def category() -> int:
        if rng.random() < out_of_type:
            return int(rng.integers(0, len(_CATEGORY_DEFS)))
        return stype.categories[int(rng.integers(0, len(stype.categories)))]

    n_try = int(rng.integers(num_objects[0], num_objects[1] + 1))
    annotations = _draw_objects(
        rng, img, category, n_try, scale_range, max_occlusion, min_visible, colour_cue, masks=True)
    img = np.clip(img + rng.normal(0.0, 2.0, img.shape), 0, 255).astype(np.uint8)
    return img, annotations, t


def _atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path, 'wb') as f:
        f.write(data)


def _atomic_dump_json(obj: dict, path: str) -> None:
    _atomic_write_bytes(path, json.dumps(obj, separators=(',', ':')).encode('utf-8'))


def _image_job(args: tuple) -> Tuple[int, str, List[dict], Optional[int]]:
    """Render and write image ``index``; module-level so that worker processes can run it."""
    index, seed, img_dir, img_size, version, render_kwargs = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    scene_type = None
    if version == 1:
        img, objs = render_scene(rng, img_size, **render_kwargs)
    else:
        img, objs, scene_type = render_scene_v2(rng, img_size, **render_kwargs)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f'cv2.imencode failed for synthetic image {index}')
    file_name = f'{index:06d}.jpg'
    _atomic_write_bytes(osp.join(img_dir, file_name), buf.tobytes())
    return index, file_name, objs, scene_type


def _worker_init() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes; avoid oversubscribing cores


def _coco_subset(images: List[dict], annotations: List[dict], info: dict, extra: Optional[dict] = None) -> dict:
    ids = {im['id'] for im in images}
    out = dict(
        info=info,
        licenses=[],
        images=images,
        annotations=[a for a in annotations if a['image_id'] in ids],
        categories=CATEGORIES)
    out.update(extra or {})
    return out


#: Version-2 options and their defaults (``None`` passed to :func:`make_synthetic_scenes` means this).
V2_DEFAULTS: Dict[str, Any] = dict(
    scene_types=4,
    categories_per_type=3,
    out_of_type=0.1,
    clutter=(0, 3),
    background_texture=1.0,
    hue_spread=0.05,
    max_occlusion=0.4)
_VERSION_DEFAULTS = {
    1: dict(num_objects=(3, 6), scale_range=(0.15, 0.6)), 2: dict(num_objects=(2, 6), scale_range=(0.15, 0.5))
}


def _check_range(name: str, value: Sequence[float], lo: float, hi: float) -> Tuple:
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f'{name} must be a (min, max) pair with {lo} <= min <= max <= {hi}, got {value}')
    return tuple(value)


def make_synthetic_scenes(out_dir: str,
                          num_images: int,
                          seed: int = 0,
                          img_size: Tuple[int, int] = (256, 256),
                          val_fraction: float = 0.2,
                          num_objects: Optional[Tuple[int, int]] = None,
                          scale_range: Optional[Tuple[float, float]] = None,
                          workers: Optional[int] = None,
                          progress: Optional[Callable[[int, int], None]] = None,
                          colour_cue: bool = False,
                          version: int = 2,
                          scene_types: Optional[int] = None,
                          categories_per_type: Optional[int] = None,
                          out_of_type: Optional[float] = None,
                          clutter: Optional[Tuple[int, int]] = None,
                          background_texture: Optional[float] = None,
                          hue_spread: Optional[float] = None,
                          max_occlusion: Optional[float] = None) -> dict:
    """Generate a synthetic scene data set in COCO format.

    Writes ``out_dir/images/NNNNNN.jpg``, ``out_dir/annotations/instances.json`` (all images) and the
    deterministic split ``instances_train.json`` / ``instances_val.json`` (val = the last
    ``round(val_fraction * num_images)`` images). Image ids are 1-based positions; category ids follow
    :data:`CATEGORIES`. Version 2 also writes each image's ``scene_type`` (an id) in its image record
    and the top-level ``scene_types`` list (id, name, category ids, background family).

    Args:
        out_dir: output folder (created if needed).
        num_images: number of images.
        seed: random seed; the output is byte-identical for a seed.
        img_size: (width, height) of every image.
        val_fraction: fraction of images, taken from the end, in the val split.
        num_objects: inclusive range of objects each image tries to place (``None``: (3, 6) in
            version 1, (2, 6) in version 2).
        scale_range: object size range as a fraction of the shorter image side (``None``:
            (0.15, 0.6) in version 1, (0.15, 0.5) in version 2).
        workers: worker processes; ``None`` = all CPU cores for large sets, 1 for small ones.
        progress: optional callback ``progress(done, total)``.
        colour_cue: give every category its own colour family (see the module docstring).
        version: 2 (scene types, the default) or 1 (the original cluttered scenes, byte-identical
            to the generator before version 2 existed).
        scene_types, categories_per_type: number of scene types and categories per type
            (:func:`make_scene_types`). Version 2 only, like the options below; ``None`` = the
            value in :data:`V2_DEFAULTS`.
        out_of_type: probability that an object's category ignores its scene type.
        clutter: inclusive range of small distractor marks per image.
        background_texture: contrast of the background patterns (0 = plain gradients).
        hue_spread: how far a background's hue strays from its type's hue.
        max_occlusion: a placement may hide at most this fraction of an earlier object.

    Returns:
        A summary dict: paths, image / object counts and the elapsed time.
    """
    if version not in (1, 2):
        raise ValueError(f'version must be 1 or 2, got {version!r}')
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    w, h = int(img_size[0]), int(img_size[1])
    if min(w, h) < 32:
        raise ValueError(f'img_size must be at least 32x32, got {img_size}')
    v2_given = dict(
        scene_types=scene_types,
        categories_per_type=categories_per_type,
        out_of_type=out_of_type,
        clutter=clutter,
        background_texture=background_texture,
        hue_spread=hue_spread,
        max_occlusion=max_occlusion)
    if version == 1 and any(v is not None for v in v2_given.values()):
        raise ValueError('version 1 scenes take none of the version-2 options; got ' +
                         ', '.join(k for k, v in v2_given.items() if v is not None))
    num_objects = tuple(num_objects) if num_objects is not None else _VERSION_DEFAULTS[version]['num_objects']
    scale_range = tuple(scale_range) if scale_range is not None else _VERSION_DEFAULTS[version]['scale_range']
    t0 = time.perf_counter()
    img_dir = osp.join(out_dir, 'images')
    ann_dir = osp.join(out_dir, 'annotations')

    render_kwargs: Dict[str, Any] = dict(num_objects=num_objects, scale_range=scale_range, colour_cue=bool(colour_cue))
    info: Dict[str, Any] = dict(
        description='orl_plugin synthetic scenes',
        version=str(version),
        seed=int(seed),
        img_size=[w, h],
        num_objects=list(num_objects),
        scale_range=list(scale_range),
        colour_cue=bool(colour_cue))
    extra: Dict[str, Any] = {}
    types: List[SceneType] = []
    if version == 2:
        opts = {k: (V2_DEFAULTS[k] if v is None else v) for k, v in v2_given.items()}
        _check_range('num_objects', num_objects, 0, 1000)
        _check_range('scale_range', scale_range, 0.01, 1.0)
        opts['clutter'] = _check_range('clutter', opts['clutter'], 0, 10000)
        if not 0.0 <= opts['out_of_type'] <= 1.0:
            raise ValueError(f'out_of_type must be in [0, 1], got {opts["out_of_type"]}')
        if not 0.0 <= opts['max_occlusion'] < 1.0:
            raise ValueError(f'max_occlusion must be in [0, 1), got {opts["max_occlusion"]}')
        types = make_scene_types(int(opts['scene_types']), int(opts['categories_per_type']))
        render_kwargs.update(
            types=types,
            out_of_type=float(opts['out_of_type']),
            clutter=opts['clutter'],
            background_texture=float(opts['background_texture']),
            hue_spread=float(opts['hue_spread']),
            max_occlusion=float(opts['max_occlusion']))
        info.update({k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()})
        extra['scene_types'] = [t.to_json() for t in types]

    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    jobs = [(i, int(seed), img_dir, (w, h), version, render_kwargs) for i in range(num_images)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if num_images >= 64 else 1
    results: List[Tuple[int, str, List[dict], Optional[int]]] = []
    if workers > 1:
        # Not 'fork': a child forked after the parent ran OpenCV (or torch) with threads can wait forever on
        # locks of threads it did not inherit (seen: a test file that draws before it generates in parallel).
        if 'forkserver' in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context('forkserver')
            ctx.set_forkserver_preload([__name__])  # imported once by the server, not by every worker
        else:
            ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for r in pool.imap(_image_job, jobs, chunksize=8):
                results.append(r)
                if progress is not None:
                    progress(len(results), num_images)
    else:
        for job in jobs:
            results.append(_image_job(job))
            if progress is not None:
                progress(len(results), num_images)

    images, annotations = [], []
    for index, file_name, objs, scene_type in results:
        record = dict(id=index + 1, file_name=file_name, width=w, height=h)
        if scene_type is not None:
            record['scene_type'] = types[scene_type].id
        images.append(record)
        for obj in objs:
            ann = dict(
                id=len(annotations) + 1,
                image_id=index + 1,
                category_id=obj['category_id'],
                bbox=obj['bbox'],
                area=obj['area'],
                iscrowd=0)
            if 'segmentation' in obj:  # version 2 only: version-1 files stay byte-identical
                ann['segmentation'] = obj['segmentation']
            annotations.append(ann)
    num_val = int(round(val_fraction * num_images))
    num_train = num_images - num_val
    paths = dict(
        ann_file=osp.join(ann_dir, 'instances.json'),
        train_ann_file=osp.join(ann_dir, 'instances_train.json'),
        val_ann_file=osp.join(ann_dir, 'instances_val.json'))
    _atomic_dump_json(_coco_subset(images, annotations, info, extra), paths['ann_file'])
    _atomic_dump_json(_coco_subset(images[:num_train], annotations, info, extra), paths['train_ann_file'])
    _atomic_dump_json(_coco_subset(images[num_train:], annotations, info, extra), paths['val_ann_file'])

    per_cat = np.bincount([a['category_id'] for a in annotations], minlength=len(CATEGORIES) + 1)[1:]
    summary = dict(
        out_dir=out_dir,
        image_dir=img_dir,
        **paths,
        num_images=num_images,
        num_train=num_train,
        num_val=num_val,
        num_objects=len(annotations),
        mean_objects_per_image=len(annotations) / num_images,
        num_categories=len(CATEGORIES),
        objects_per_category={c['name']: int(n) for c, n in zip(CATEGORIES, per_cat)},
        img_size=(w, h),
        seed=int(seed),
        workers=workers,
        version=version)
    if types:
        per_type = np.bincount([r[3] for r in results], minlength=len(types))
        summary['images_per_scene_type'] = {t.name: int(n) for t, n in zip(types, per_type)}
    summary['elapsed_s'] = time.perf_counter() - t0
    return summary
