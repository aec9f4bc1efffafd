"""Synthetic scene images with COCO-format ground truth, for CPU demos, tests and the mechanism yardstick.

Eight object categories (``categories``), drawn by ``drawing`` into version-2 scenes (``scenes_v2``, the
default: scene types whose images share categories, ORL's premise) or the original version-1 scenes
(``scenes_v1``); ``writer`` makes a data set, byte-identical for a seed whatever the number of workers.
Design and measurements: docs/en/notes/synthetic_scenes.md.
"""
from .categories import CATEGORIES
from .scenes_v1 import render_scene
from .scenes_v2 import BACKGROUND_PATTERNS, SceneType, make_scene_types, render_scene_v2
from .writer import V2_DEFAULTS, make_synthetic_scenes

__all__ = [
    'BACKGROUND_PATTERNS', 'CATEGORIES', 'SceneType', 'V2_DEFAULTS', 'make_scene_types', 'make_synthetic_scenes',
    'render_scene', 'render_scene_v2'
]
