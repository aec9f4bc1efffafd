"""Importing this package registers its components."""
from .correspondence_metric import CorrespondenceMetric  # noqa: F401
from .knn_metric import KNNMetric  # noqa: F401
from .selective_search_metric import SelectiveSearchMetric  # noqa: F401
