"""Importing this package registers its components."""
from .data_preprocessors import ViewAugmentDataPreprocessor  # noqa: F401
from .image_feature import ImageFeature  # noqa: F401
from .objectives import BYOLObjective, ContrastiveObjective  # noqa: F401
from .orl import ORL  # noqa: F401
from .roi_feature import RoIFeature  # noqa: F401
from .selective_search_proposer import SelectiveSearchProposer  # noqa: F401
from .top_ratio_pairs import TopRatioPairs  # noqa: F401
