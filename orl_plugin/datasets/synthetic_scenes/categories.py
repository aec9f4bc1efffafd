"""The eight object categories of the synthetic scenes: each a shape, a texture and a colour family."""
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

__all__ = ['CATEGORIES']


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
