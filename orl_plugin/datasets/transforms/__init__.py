"""Importing this package registers its components."""
from .box_filter import FilterBoxes, filter_boxes  # noqa: F401
from .box_jitter import BoxJitter, jitter_box  # noqa: F401
from .crop_boxes import CropBoxes, crop_boxes  # noqa: F401
from .loading import BadImageError, LoadImageOrSkip  # noqa: F401
from .orl_views import ImageViews, ORLViews  # noqa: F401
from .roi_crop import RoICrop  # noqa: F401
from .selective_search import SelectiveSearch, selective_search  # noqa: F401
