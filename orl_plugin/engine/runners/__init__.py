"""Importing this package registers its components."""
from .correspondence_loop import CorrespondenceLoop  # noqa: F401
from .knn_loop import KNNMiningLoop  # noqa: F401
from .mining_loop import MiningLoop  # noqa: F401
from .selective_search_loop import SelectiveSearchLoop  # noqa: F401
