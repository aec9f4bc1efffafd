"""Importing this package registers its components."""
from .object_probe_hook import ObjectProbeHook  # noqa: F401
from .view_retrieval_hook import ViewRetrievalHook  # noqa: F401
