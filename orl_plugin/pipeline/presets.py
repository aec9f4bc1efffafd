"""Which config each stage runs: named presets, or a directory of ``<stage>.py`` files."""
import glob
import os.path as osp
from typing import Dict, Iterable, Optional, Tuple

from .stages import STAGE_BY_NAME, STAGES, PipelineError

# Config file per stage, relative to the repository root. Globs must match exactly one file.
PRESETS: Dict[str, Dict[str, str]] = {
    'synthetic': {
        'stage1': 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py',
        'knn': 'configs/orl/stage2/knn_byol-resnet18_1xb64_synthetic.py',
        'selective_search': 'configs/orl/stage2/selective-search_synthetic.py',
        'correspondence': 'configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py',
        'stage3': 'configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py',
        'finetune': 'configs/benchmarks/mmdetection/synthetic/faster-rcnn_r18_fpn_1xb8-*_synthetic.py',
    },
    'coco': {
        'stage1': 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py',
        'knn': 'configs/orl/stage2/knn_byol-resnet50_8xb64_coco.py',
        'selective_search': 'configs/orl/stage2/selective-search_coco.py',
        'correspondence': 'configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco.py',
        'stage3': 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py',
        'finetune': 'configs/benchmarks/mmdetection/coco/mask-rcnn_r50-syncbn-4conv1fc_fpn_ms-90k_coco_orl.py',
    },
    'coco-plus': {
        'stage1': 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco-plus.py',
        'knn': 'configs/orl/stage2/knn_byol-resnet50_8xb64_coco-plus.py',
        'selective_search': 'configs/orl/stage2/selective-search_coco-plus.py',
        'correspondence': 'configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco-plus.py',
        'stage3': 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco-plus.py',
        # Transfer is always evaluated on COCO (train2017 -> val2017), whatever the pre-training set.
        'finetune': 'configs/benchmarks/mmdetection/coco/mask-rcnn_r50-syncbn-4conv1fc_fpn_ms-90k_coco_orl.py',
    },
}


def repo_root() -> str:
    """Where configs/ and tools/ are: the checkout, or a wheel install's ``orl_plugin/.mim``."""
    from ..mim_files import files_root
    return files_root()


def resolve_configs(preset_or_dir: str, root: Optional[str] = None) -> Tuple[str, Dict[str, str]]:
    """Map each stage to a config file, from a preset name or a directory of stage configs.

    Returns ``(label, {stage: absolute config path})``. A stage with no config is absent (only
    allowed for ``finetune``; :func:`check_configs` says which are missing).
    """
    root = root or repo_root()
    if preset_or_dir in PRESETS:
        configs = {}
        for stage, pattern in PRESETS[preset_or_dir].items():
            matches = sorted(glob.glob(osp.join(root, pattern)))
            if len(matches) == 1:
                configs[stage] = matches[0]
            elif len(matches) > 1:
                raise PipelineError(f'preset {preset_or_dir!r}: pattern {pattern!r} for stage {stage} '
                                    f'matches several configs: {matches}')
        return preset_or_dir, configs
    if osp.isdir(preset_or_dir):
        configs = {}
        for spec in STAGES:
            path = osp.join(preset_or_dir, spec.config_file)
            if osp.isfile(path):
                configs[spec.name] = osp.abspath(path)
        label = osp.basename(osp.normpath(preset_or_dir))
        return label, configs
    raise PipelineError(f'{preset_or_dir!r} is neither a preset ({", ".join(PRESETS)}) nor a directory '
                        f'holding {", ".join(s.config_file for s in STAGES)}')


def check_configs(preset_or_dir: str, missing: Iterable[str]) -> None:
    """Name the config files of the ``missing`` stages that a preset or directory lacks."""
    missing = list(missing)
    if not missing:
        return
    if preset_or_dir in PRESETS:
        want = ', '.join(f'{s}: {PRESETS[preset_or_dir][s]}' for s in missing)
        raise PipelineError(f'preset {preset_or_dir!r}: no config file matches ({want})')
    want = ', '.join(STAGE_BY_NAME[s].config_file for s in missing)
    raise PipelineError(f'directory {preset_or_dir!r} has no {want}')
