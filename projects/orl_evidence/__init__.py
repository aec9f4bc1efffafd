"""The evidence harness: the tools that measure whether ORL works (README.md here), not ORL itself.

Importing it registers the project's components (the measuring instrument's ``ObjectCropDataset``);
its configs load it from the repository root with
``custom_imports=dict(imports=['orl_plugin', 'projects.orl_evidence'], allow_failed_imports=False)``.
"""
from .datasets import ObjectCropDataset  # noqa: F401
