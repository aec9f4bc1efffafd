"""Config edits as ``--cfg-options`` items: user items per stage, --data-root, --schedule, the wiring."""
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .stages import PipelineError, resolve_stage

_CONFIG_CACHE: Dict[str, Any] = {}


def load_config(path: str) -> Dict[str, Any]:
    """A config file as a plain dict (``mmengine.Config.fromfile(path).to_dict()``), cached per
    process; read for option filtering and --data-root (mmengine is imported only then)."""
    if path not in _CONFIG_CACHE:
        from mmengine.config import Config
        _CONFIG_CACHE[path] = Config.fromfile(path).to_dict()
    return _CONFIG_CACHE[path]


def has_parent_key(cfg: Any, dotted: str) -> bool:
    """Whether every component of ``dotted`` but the last exists in ``cfg`` (dicts, list indices)."""
    node = cfg
    for part in dotted.split('.')[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, (dict, list, tuple))


def parse_stage_options(items: Sequence[str]) -> Dict[str, List[str]]:
    """Split ``[STAGE:]key=value`` items into per-stage option lists (key ``'*'``: every stage)."""
    out: Dict[str, List[str]] = {'*': []}
    for item in items:
        if '=' not in item:
            raise PipelineError(f'--cfg-options item {item!r} is not [STAGE:]key=value')
        head, _, _ = item.partition('=')
        if ':' in head:
            stage, _, rest = item.partition(':')
            out.setdefault(resolve_stage(stage), []).append(rest)
        else:
            out['*'].append(item)
    return out


def data_root_options(config_path: str, new_root: str) -> List[str]:
    """cfg-options that move a config onto another data root.

    The config's top-level ``data_root`` (every shipped config has one) is the old root. Every
    ``data_root`` field equal to it becomes ``new_root``, and every other string field that starts
    with it (``ann_file`` of a COCO evaluator, ``out_file`` of a mining evaluator...) gets the new
    prefix. Relative fields (joined to the dataset's ``data_root`` by the dataset) need nothing.
    """
    cfg = load_config(config_path)
    old = cfg.get('data_root')
    if not isinstance(old, str) or not old:
        raise PipelineError(f'{config_path}: --data-root needs a top-level data_root in the config')
    new = new_root if not old.endswith('/') or new_root.endswith('/') else new_root + '/'
    items: List[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f'{path}.{k}' if path else str(k)
                if isinstance(v, str):
                    if k == 'data_root' and osp.normpath(v) == osp.normpath(old):
                        items.append(f'{sub}={new}')
                    elif v.startswith(old) and sub != 'data_root':
                        items.append(f'{sub}={new}{v[len(old):]}')
                else:
                    walk(v, sub)
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}.{i}')

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator', 'train_cfg',
                'val_cfg', 'test_cfg', 'custom_hooks'):
        if key in cfg:
            walk(cfg[key], key)
    return items


def image_list_options(config_path: str, image_list: str) -> List[str]:
    """cfg-options that make a stage read the images of ``image_list`` (a COCO-style JSON such as
    ``tools/analysis_tools/check_images.py --out`` writes): the ``ann_file`` of its data set (the
    training or the mining one), whose image folder (``data_prefix``) stays the config's."""
    cfg = load_config(config_path)
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        if 'ann_file' not in dataset:
            continue
        if isinstance(dataset.get('data_prefix'), (list, tuple)) and len(dataset['data_prefix']) > 1:
            raise PipelineError(f'{config_path}: --image-list gives one image folder, but {loader}.dataset reads '
                                f'{len(dataset["data_prefix"])} (data_prefix); make the list with one of them')
        return [f'{loader}.dataset.ann_file={image_list}']
    raise PipelineError(f'{config_path}: --image-list needs an ann_file in train_dataloader.dataset or '
                        'test_dataloader.dataset')


def schedule_options(config_path: str, length: int) -> List[str]:
    """cfg-options that change a config's training length to ``length`` epochs (epoch-based loop)
    or iterations (iteration-based loop) and rescale its schedule with it.

    A scheduler ending at the old length now ends at the new one (and a cosine ``T_max`` that
    spanned it spans the new span); step ``milestones`` and a warm-up longer than the new run scale
    proportionally; ``val_interval`` equal to the old length follows. Without this, overriding
    ``train_cfg.max_epochs`` alone leaves the learning rate where a long schedule would be.
    """
    if length < 1:
        raise PipelineError(f'{config_path}: a schedule needs at least 1 epoch/iteration, got {length}')
    cfg = load_config(config_path)
    tc = cfg.get('train_cfg') or {}
    key = 'max_epochs' if 'max_epochs' in tc else 'max_iters' if 'max_iters' in tc else None
    if key is None:
        raise PipelineError(f'{config_path}: train_cfg has neither max_epochs nor max_iters')
    old = int(tc[key])
    by_epoch = key == 'max_epochs'
    items = [f'train_cfg.{key}={length}']
    if tc.get('val_interval') == old:
        items.append(f'train_cfg.val_interval={length}')
    scheds = cfg.get('param_scheduler') or []
    single = isinstance(scheds, dict)
    for i, sch in enumerate([scheds] if single else scheds):
        if bool(sch.get('by_epoch', True)) != by_epoch:
            continue  # measured in the other unit: left alone
        pre = 'param_scheduler' if single else f'param_scheduler.{i}'
        begin = int(sch.get('begin', 0))
        end = sch.get('end')
        if end is not None and end >= old:
            if length <= begin:
                continue  # the shorter run ends before this scheduler starts
            items.append(f'{pre}.end={length}')
            if sch.get('T_max') == old - begin:
                items.append(f'{pre}.T_max={max(1, length - begin)}')
        elif end is not None and end > length:  # a warm-up longer than the new run
            items.append(f'{pre}.end={max(1, round(end * length / old))}')
        if sch.get('milestones'):
            ms = [max(1, round(m * length / old)) for m in sch['milestones']]
            items.append(f'{pre}.milestones=[{",".join(str(m) for m in ms)}]')
    return items


def stage_options(config_path: str,
                  wired: Mapping[str, Any],
                  data_root: Optional[str] = None,
                  schedule: Optional[int] = None,
                  common: Sequence[str] = (),
                  own: Sequence[str] = (),
                  image_list: Optional[str] = None) -> List[str]:
    """All cfg-options of one stage, one per key, later items winning (as DictAction would).

    In order: the --data-root moves, the --image-list, the --schedule rescaling, the wired inputs, the
    user's items for every stage (``common``) and the user's items for this stage (``own``).
    """
    items: List[str] = []
    if data_root:
        items += data_root_options(config_path, data_root)
    if image_list:
        items += image_list_options(config_path, image_list)
    if schedule is not None:
        items += schedule_options(config_path, schedule)
    items += [f'{k}={v}' for k, v in wired.items()]
    # An item for every stage only goes where it makes sense: a config that has its parent key
    # (``train_dataloader.num_workers=0`` must not give a mining config a half train_dataloader).
    if common:
        cfg = load_config(config_path)
        items += [it for it in common if has_parent_key(cfg, it.split('=', 1)[0])]
    items += own
    merged: Dict[str, str] = {}
    for it in items:
        key = it.split('=', 1)[0]
        merged.pop(key, None)
        merged[key] = it
    return list(merged.values())
