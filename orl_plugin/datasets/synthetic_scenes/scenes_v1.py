"""Version-1 scenes (``version=1``): a cluttered background with objects of any category."""
import math
from typing import List, Tuple

import cv2
import numpy as np

from .categories import _CATEGORY_DEFS
from .drawing import _draw_distractor, _draw_objects, _gradient, _hsv_to_bgr

__all__ = ['render_scene']


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
