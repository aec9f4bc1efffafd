"""Version-2 scenes (the default): scene types, each a background family and a few categories of its own."""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .categories import _CATEGORY_DEFS
from .drawing import _draw_distractor, _draw_objects, _gradient, _hsv_to_bgr

__all__ = ['BACKGROUND_PATTERNS', 'SceneType', 'make_scene_types', 'render_scene_v2']

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
