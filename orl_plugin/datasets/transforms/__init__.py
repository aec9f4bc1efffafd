"""Importing this package registers its components."""
from .box_filter import FilterBoxes, filter_boxes  # noqa: F401
