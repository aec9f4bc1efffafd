"""Importing this package registers its components."""
from . import transforms  # noqa: F401
