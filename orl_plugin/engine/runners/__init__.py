"""Importing this package registers its components."""
from .mining_loop import MiningLoop  # noqa: F401
