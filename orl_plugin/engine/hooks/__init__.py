"""Importing this package registers its components."""
from .object_probe_hook import ObjectProbeHook  # noqa: F401
