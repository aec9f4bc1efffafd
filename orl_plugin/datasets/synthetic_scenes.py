"""Synthetic scene images with COCO-format ground truth, for CPU demos and tests.

Each image is a cluttered background (colour gradient, low-frequency colour noise, pixel noise and many
small distractor strokes and blobs of random colours) with several objects drawn back to front. Every
object category has its own shape and its own texture, so that a category is recognisable across
images (scale, rotation, colour, shade and lighting vary) and categories are distinguishable from each
other: this is what makes the data learnable by image- and object-level self-supervision, and lets the
mining evaluators score KNN and correspondence quality.

Colour is random per object by default. With ``colour_cue=True`` every category also gets its own
colour family; that makes the categories separable by colour alone, which even a randomly initialised
ConvNet's pooled features do (object kNN probe: 0.90 top-1 at random init), so pre-training has
little left to show; BYOL's colour jitter even removes the cue (0.81 after 30 CPU epochs).

Ground truth: every annotated object has the box of its full extent (also where another object
covers part of it), ``iscrowd=0`` and ``area`` = its visible pixel count. Placement is rejected when
it would hide more than ``max_occlusion`` of an earlier object, and any object with less than
half of itself visible at the end is left out of the annotations. Every box lies inside its image.

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
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ['CATEGORIES', 'make_synthetic_scenes', 'render_scene']

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
CATEGORIES: List[dict] = [
    dict(id=i + 1, name=c.name, supercategory='shape') for i, c in enumerate(_CATEGORY_DEFS)
]


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
    return np.array([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a),
                     (-b, a), (-b, -a), (-a, -a)], dtype=np.float64)


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
        r = np.sqrt(u * u + (v / aspect) ** 2)
        return np.sin(2 * np.pi * 4.0 * r) > 0
    if kind == 'nut':
        # A concentric inner hexagon (the shape's own norm: distance along its apothem directions).
        d = np.max(np.stack([np.abs(u * math.cos(a) + v * math.sin(a))
                             for a in np.deg2rad([30.0, 90.0, 150.0])]), axis=0)
        return d < 0.45 * 0.5 * math.cos(math.pi / 6)
    if kind == 'outline':
        return np.zeros_like(u, dtype=bool)  # solid fill; the dark outline is drawn on the mask edge
    raise ValueError(f'unknown texture {kind!r}')


def _fill(mask: np.ndarray, polys: Sequence[np.ndarray], value: int) -> None:
    pts = [np.round(p * (1 << _SHIFT)).astype(np.int32) for p in polys]
    cv2.fillPoly(mask, pts, value, lineType=cv2.LINE_8, shift=_SHIFT)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Cluttered background: gradient + low-frequency colour noise + pixel noise + distractors."""
    c0 = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.9))
    c1 = _hsv_to_bgr(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.9))
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang)
    t = ((t - t.min()) / max(float(t.max() - t.min()), 1e-6))[..., None]
    img = c0 * (1 - t) + c1 * t
    gh, gw = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    low = rng.normal(0.0, 1.0, (gh, gw, 3)).astype(np.float32)
    img += cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(10, 35)
    img += rng.normal(0.0, rng.uniform(2, 8), (h, w, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    side = min(w, h)
    for _ in range(int(rng.integers(15, 45))):
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
    return img


def render_scene(rng: np.random.Generator,
                 img_size: Tuple[int, int] = (256, 256),
                 num_objects: Tuple[int, int] = (3, 6),
                 scale_range: Tuple[float, float] = (0.15, 0.6),
                 max_occlusion: float = 0.4,
                 min_visible: float = 0.5,
                 colour_cue: bool = False) -> Tuple[np.ndarray, List[dict]]:
    """Draw one scene.

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
    owner = np.full((h, w), -1, dtype=np.int16)  # index of the object that shows at each pixel
    objects: List[dict] = []
    full_area: List[int] = []  # pixels of each object's full extent
    visible: List[int] = []  # pixels of each object still showing
    n_try = int(rng.integers(num_objects[0], num_objects[1] + 1))
    lo, hi = math.log(scale_range[0]), math.log(scale_range[1])
    for _ in range(n_try):
        cat_idx = int(rng.integers(0, len(_CATEGORY_DEFS)))
        cat = _CATEGORY_DEFS[cat_idx]
        fills, holes = _SHAPES[cat.shape]
        placed = None
        for _attempt in range(20):
            s = math.exp(rng.uniform(lo, hi)) * side
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
            hidden = np.bincount(below[below >= 0], minlength=len(objects))
            # An earlier object must keep at least (1 - max_occlusion) of its full area visible.
            ok = all(visible[j] - hid >= (1.0 - max_occlusion) * full_area[j]
                     for j, hid in enumerate(hidden) if hid)
            if ok:
                placed = (s, aspect, rot, cx, cy, x0, y0, x1, y1, m, area, hidden)
                break
        if placed is None:
            continue
        s, aspect, rot, cx, cy, x0, y0, x1, y1, m, area, hidden = placed
        for j, hid in enumerate(hidden):
            visible[j] -= int(hid)
        # Texture in object-normalised coordinates, so it scales and rotates with the object.
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx - cx, yy - cy
        u = (dx * rot[0, 0] + dy * rot[1, 0]) / s
        v = (dx * rot[0, 1] + dy * rot[1, 1]) / s
        # One draw either way, so both settings place the same objects in the same images.
        hue = cat.hue + rng.uniform(-0.02, 0.02) if colour_cue else rng.uniform(0.0, 1.0)
        primary = _hsv_to_bgr(hue, rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0))
        secondary = _hsv_to_bgr(hue, rng.uniform(0.6, 1.0), rng.uniform(0.2, 0.4))
        pattern = _texture(cat.texture, u, v, aspect)
        patch = np.where(pattern[..., None], secondary, primary)
        if cat.texture == 'outline':
            edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8),
                                  iterations=max(1, int(round(0.05 * s)))).astype(bool)
            patch[edge] = secondary
        # Soft directional lighting so that shade varies within and across objects.
        light_dir = rng.uniform(0, 2 * np.pi)
        shade = 1.0 + rng.uniform(0.0, 0.35) * (u * math.cos(light_dir) + v * math.sin(light_dir))
        patch = patch * shade[..., None]
        region = img[y0:y1, x0:x1]
        region[m] = patch[m]
        owner[y0:y1, x0:x1][m] = len(objects)
        ys, xs = np.nonzero(m)
        objects.append(dict(category_id=cat_idx + 1,
                            bbox=[float(x0 + xs.min()), float(y0 + ys.min()),
                                  float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]))
        full_area.append(area)
        visible.append(area)
    # A few thin strokes over everything: clutter that also crosses objects.
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        a, ln = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.2) * side
        cv2.line(img, p0, (int(p0[0] + ln * math.cos(a)), int(p0[1] + ln * math.sin(a))), color, 1,
                 cv2.LINE_AA)
    img = np.clip(img.astype(np.float32) + rng.normal(0.0, 2.0, img.shape), 0, 255).astype(np.uint8)

    annotations = []
    for j, obj in enumerate(objects):
        if visible[j] < min_visible * full_area[j]:
            continue
        annotations.append(dict(obj, area=float(visible[j])))
    return img, annotations


def _atomic_write_bytes(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path), prefix='.tmp_', suffix=osp.splitext(path)[1])
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_dump_json(obj: dict, path: str) -> None:
    _atomic_write_bytes(path, json.dumps(obj, separators=(',', ':')).encode('utf-8'))


def _image_job(args: tuple) -> Tuple[int, str, List[dict]]:
    """Render and write image ``index``; module-level so that worker processes can run it."""
    index, seed, img_dir, img_size, render_kwargs = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    img, objs = render_scene(rng, img_size, **render_kwargs)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f'cv2.imencode failed for synthetic image {index}')
    file_name = f'{index:06d}.jpg'
    _atomic_write_bytes(osp.join(img_dir, file_name), buf.tobytes())
    return index, file_name, objs


def _worker_init() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes; avoid oversubscribing cores


def _coco_subset(images: List[dict], annotations: List[dict], info: dict) -> dict:
    ids = {im['id'] for im in images}
    return dict(info=info, licenses=[], images=images,
                annotations=[a for a in annotations if a['image_id'] in ids], categories=CATEGORIES)


def make_synthetic_scenes(out_dir: str,
                          num_images: int,
                          seed: int = 0,
                          img_size: Tuple[int, int] = (256, 256),
                          val_fraction: float = 0.2,
                          num_objects: Tuple[int, int] = (3, 6),
                          scale_range: Tuple[float, float] = (0.15, 0.6),
                          workers: Optional[int] = None,
                          progress: Optional[Callable[[int, int], None]] = None,
                          colour_cue: bool = False) -> dict:
    """Generate a synthetic scene data set in COCO format.

    Writes ``out_dir/images/NNNNNN.jpg``, ``out_dir/annotations/instances.json`` (all images) and the
    deterministic split ``instances_train.json`` / ``instances_val.json`` (val = the last
    ``round(val_fraction * num_images)`` images). Image ids are 1-based positions; category ids follow
    :data:`CATEGORIES`.

    Args:
        out_dir: output folder (created if needed).
        num_images: number of images.
        seed: random seed; the output is byte-identical for a seed.
        img_size: (width, height) of every image.
        val_fraction: fraction of images, taken from the end, in the val split.
        num_objects: inclusive range of objects each image tries to place.
        scale_range: object size range as a fraction of the shorter image side.
        workers: worker processes; ``None`` = all CPU cores for large sets, 1 for small ones.
        progress: optional callback ``progress(done, total)``.
        colour_cue: give every category its own colour family (see the module docstring).

    Returns:
        A summary dict: paths, image / object counts and the elapsed time.
    """
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    w, h = int(img_size[0]), int(img_size[1])
    if min(w, h) < 32:
        raise ValueError(f'img_size must be at least 32x32, got {img_size}')
    t0 = time.perf_counter()
    img_dir = osp.join(out_dir, 'images')
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)

    render_kwargs = dict(num_objects=tuple(num_objects), scale_range=tuple(scale_range),
                         colour_cue=bool(colour_cue))
    jobs = [(i, int(seed), img_dir, (w, h), render_kwargs) for i in range(num_images)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if num_images >= 64 else 1
    results: List[Tuple[int, str, List[dict]]] = []
    if workers > 1:
        ctx = multiprocessing.get_context('spawn' if os.name == 'nt' else 'fork')
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
    for index, file_name, objs in results:
        images.append(dict(id=index + 1, file_name=file_name, width=w, height=h))
        for obj in objs:
            annotations.append(dict(id=len(annotations) + 1, image_id=index + 1,
                                    category_id=obj['category_id'], bbox=obj['bbox'],
                                    area=obj['area'], iscrowd=0))
    info = dict(description='orl_plugin synthetic scenes', version='1', seed=int(seed),
                img_size=[w, h], num_objects=list(num_objects), scale_range=list(scale_range),
                colour_cue=bool(colour_cue))
    num_val = int(round(val_fraction * num_images))
    num_train = num_images - num_val
    paths = dict(ann_file=osp.join(ann_dir, 'instances.json'),
                 train_ann_file=osp.join(ann_dir, 'instances_train.json'),
                 val_ann_file=osp.join(ann_dir, 'instances_val.json'))
    _atomic_dump_json(_coco_subset(images, annotations, info), paths['ann_file'])
    _atomic_dump_json(_coco_subset(images[:num_train], annotations, info), paths['train_ann_file'])
    _atomic_dump_json(_coco_subset(images[num_train:], annotations, info), paths['val_ann_file'])

    per_cat = np.bincount([a['category_id'] for a in annotations], minlength=len(CATEGORIES) + 1)[1:]
    return dict(out_dir=out_dir, image_dir=img_dir, **paths,
                num_images=num_images, num_train=num_train, num_val=num_val,
                num_objects=len(annotations),
                mean_objects_per_image=len(annotations) / num_images,
                num_categories=len(CATEGORIES),
                objects_per_category={c['name']: int(n) for c, n in zip(CATEGORIES, per_cat)},
                img_size=(w, h), seed=int(seed), workers=workers,
                elapsed_s=time.perf_counter() - t0)
