"""Console entry points declared in pyproject.toml (``[project.scripts]``)."""


def pipeline_main() -> None:
    """``orl-pipeline``: the same command line as ``tools/pipeline.py``."""
    from .cli import run_cli
    from .pipeline import main
    run_cli(main)
