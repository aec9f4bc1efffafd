"""Importing this package registers its components."""
from .drawing import draw_pairs, draw_proposals  # noqa: F401
