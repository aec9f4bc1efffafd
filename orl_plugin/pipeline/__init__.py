"""The one-command ORL pipeline: stage 1 -> 2a/2b/2c -> stage 3 (-> detection fine-tune).

Every stage is launched exactly as a user would launch it by hand (``tools/train.py``, ``tools/test.py``,
``tools/det_train.py``, or their ``dist_*.sh`` / ``slurm_*.sh`` launchers) on its own config, with the
upstream outputs passed in through ``--cfg-options``. Modules: ``stages`` (the graph and its wiring),
``presets`` (data-set presets and the folder recipes), ``config_edits``, ``launch``, ``records``
(markers, metrics, summary), ``runner`` (skip, resume, run), ``reporting`` (the end-of-run table,
``summary.json`` and pictures of ``make demo`` and ``orl-pipeline folder``), ``cli``.
"""
from .cli import main
from .config_edits import data_root_options, load_config, parse_stage_options, schedule_options
from .launch import with_pythonpath
from .presets import FOLDER_PRESETS, PRESETS, folder_recipe, repo_root, resolve_configs
from .records import latest_checkpoint, read_run_metrics
from .runner import Pipeline, PipelineOptions
from .stages import STAGE_BY_NAME, STAGES, STORE_OUT_KEY, PipelineError, descendants, resolve_stage

__all__ = [
    'main', 'data_root_options', 'load_config', 'parse_stage_options', 'schedule_options', 'PRESETS', 'FOLDER_PRESETS',
    'folder_recipe', 'repo_root', 'resolve_configs', 'latest_checkpoint', 'read_run_metrics', 'Pipeline',
    'PipelineOptions', 'STAGE_BY_NAME', 'STAGES', 'STORE_OUT_KEY', 'PipelineError', 'descendants', 'resolve_stage',
    'with_pythonpath'
]
