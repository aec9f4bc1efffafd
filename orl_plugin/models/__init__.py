"""Importing this package registers its components."""
from .selective_search_proposer import SelectiveSearchProposer  # noqa: F401
from .orl import ORL  # noqa: F401
