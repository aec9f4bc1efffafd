"""Console entry points declared in pyproject.toml (``[project.scripts]``)."""


def pipeline_main() -> None:
    """``orl-pipeline``: the same command line as ``tools/pipeline.py``."""
    import sys

    from .pipeline import main
    sys.exit(main())
