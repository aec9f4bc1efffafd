"""Importing this package registers its components."""
from .view_augment_data_preprocessor import ViewAugmentDataPreprocessor  # noqa: F401
