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

# A folder of the user's images (``--data-root DIR``, required): one recipe per kind of machine,
# chosen by :func:`folder_recipe`. No fine-tune: a folder has no boxes to fine-tune on.
FOLDER = 'folder'
FOLDER_PRESETS: Dict[str, Dict[str, str]] = {
    'folder-gpu': {  # the COCO recipe (ResNet-50, 224 px, 800 epochs); selective search at <= 1024 px
        'stage1': 'configs/orl/folder/byol_resnet50_8xb64-coslr-800e_folder.py',
        'knn': 'configs/orl/folder/knn_byol-resnet50_8xb64_folder.py',
        'selective_search': 'configs/orl/folder/selective-search_8workers_folder.py',
        'correspondence': 'configs/orl/folder/correspondence_byol-resnet50_8xb64_folder.py',
        'stage3': 'configs/orl/folder/orl_resnet50_8xb64-coslr-800e_folder.py',
    },
    'folder-cpu': {  # the CPU recipe (ResNet-18, 96 px views, 30 epochs); the same box filter
        'stage1': 'configs/orl/folder/byol_resnet18_1xb32-coslr-30e_folder.py',
        'knn': 'configs/orl/folder/knn_byol-resnet18_1xb64_folder.py',
        'selective_search': 'configs/orl/folder/selective-search_2workers_folder.py',
        'correspondence': 'configs/orl/folder/correspondence_byol-resnet18_1xb64_folder.py',
        'stage3': 'configs/orl/folder/orl_resnet18_1xb16-coslr-30e_folder.py',
    },
}
FOLDER_RULE = ("'folder' runs the COCO recipe (folder-gpu) when --launcher slurm is given or a CUDA device is "
               'visible here, unless --gpus 0; else the CPU recipe (folder-cpu). Name folder-gpu or folder-cpu '
               'to choose.')


def folder_recipe(gpus: int, launcher: str, cuda: Optional[bool] = None) -> Tuple[str, str]:
    """``(preset, why)`` for ``folder``: see :data:`FOLDER_RULE`. ``cuda``: whether a CUDA device is
    visible (default: ask torch)."""
    if gpus < 1:
        return 'folder-cpu', '--gpus 0'
    if launcher == 'slurm':
        return 'folder-gpu', '--launcher slurm (GPU nodes)'
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
    if cuda:
        return 'folder-gpu', 'a CUDA device is visible'
    return 'folder-cpu', 'no CUDA device is visible'


def all_presets() -> Dict[str, Dict[str, str]]:
    """Every named preset: the data-set presets and the folder recipes."""
    return {**PRESETS, **FOLDER_PRESETS}


def repo_root() -> str:
    """Where configs/ and tools/ are: the checkout, or a wheel install's ``orl_plugin/.mim``."""
    from ..utils.mim_files import files_root
    return files_root()


def resolve_configs(preset_or_dir: str, root: Optional[str] = None) -> Tuple[str, Dict[str, str]]:
    """Map each stage to a config file, from a preset name or a directory of stage configs.

    Returns ``(label, {stage: absolute config path})``. A stage with no config is absent (only
    allowed for ``finetune``; :func:`check_configs` says which are missing).
    """
    root = root or repo_root()
    presets = all_presets()
    if preset_or_dir in presets:
        configs = {}
        for stage, pattern in presets[preset_or_dir].items():
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
    raise PipelineError(f'{preset_or_dir!r} is neither a preset ({", ".join([*presets, FOLDER])}) nor a directory '
                        f'holding {", ".join(s.config_file for s in STAGES)}')


def check_configs(preset_or_dir: str, missing: Iterable[str]) -> None:
    """Name the config files of the ``missing`` stages that a preset or directory lacks."""
    missing = list(missing)
    if not missing:
        return
    if preset_or_dir in FOLDER_PRESETS and 'finetune' in missing:
        raise PipelineError(f'preset {preset_or_dir!r} has no detection fine-tune (a folder has no boxes); '
                            'fine-tune the stage-3 checkpoint with any mmdet config (tools/det_train.py)')
    presets = all_presets()
    if preset_or_dir in presets:
        want = ', '.join(f'{s}: {presets[preset_or_dir].get(s)}' for s in missing)
        raise PipelineError(f'preset {preset_or_dir!r}: no config file matches ({want})')
    want = ', '.join(STAGE_BY_NAME[s].config_file for s in missing)
    raise PipelineError(f'directory {preset_or_dir!r} has no {want}')
