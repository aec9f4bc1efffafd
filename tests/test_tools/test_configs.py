"""Every config loads; top-level configs load the plugin; importing the plugin registers its parts;
the stages share their views and image decoding; the models initialise as the official code."""
import ast
import fnmatch
import glob
import importlib
import math
import os
import os.path as osp
from typing import Dict, List, Tuple

import pytest
import torch
from helpers import ROOT
from mmengine.config import Config
from mmengine.registry import DefaultScope

PACKAGE = osp.join(ROOT, 'orl_plugin')
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))
# Sub-packages that `import orl_plugin` leaves out (they import mmdet); configs import them by name.
OPT_IN = ('orl_plugin.transfer', )


def _is_base_fragment(path: str) -> bool:
    return '_base_' in osp.relpath(path, ROOT).split(os.sep)


def _dataloaders(cfg: Config) -> Dict[str, dict]:
    return {
        key: cfg[key] for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        if isinstance(cfg.get(key), dict)
    }


def test_configs_found():
    assert CONFIGS, 'no configs under configs/'


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_loads(path):
    cfg = Config.fromfile(path)
    if _is_base_fragment(path):
        return
    imports = cfg.get('custom_imports', {}).get('imports', [])
    imports = [imports] if isinstance(imports, str) else list(imports)
    assert any(m == 'orl_plugin' or m.startswith('orl_plugin.') for m in imports), \
        f'{path}: custom_imports must import orl_plugin, got {imports}'
    assert cfg.custom_imports.get('allow_failed_imports', False) is False, \
        f'{path}: custom_imports must not allow failed imports'
    assert cfg.get('default_scope'), f'{path}: default_scope is not set'
    for key, loader in _dataloaders(cfg).items():
        if not loader.get('num_workers', 0):
            assert not loader.get('persistent_workers', False), \
                f'{path}: {key} has num_workers=0 and persistent_workers=True'


# --------------------------------------------------------------------------------------
# Registration: every `@REGISTRY.register_module()` in the package is live after import.
# --------------------------------------------------------------------------------------
def _registered_in_source() -> List[Tuple[str, str, str, str, str]]:
    """(module, object name, registry module, registry attribute, registered name) per decorator."""
    found = []
    for path in sorted(glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True)):
        module = osp.splitext(osp.relpath(path, ROOT))[0].replace(os.sep, '.')
        if module.endswith('.__init__'):
            module = module[:-len('.__init__')]
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        registries = {}  # local name -> (module, attribute) for `from x.registry import Y`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.endswith('registry'):
                for alias in node.names:
                    registries[alias.asname or alias.name] = (node.module, alias.name)
        for node in tree.body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for dec in node.decorator_list:
                if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                        and dec.func.attr == 'register_module' and isinstance(dec.func.value, ast.Name)
                        and dec.func.value.id in registries):
                    continue
                name = node.name
                for kw in dec.keywords:
                    if kw.arg == 'name' and isinstance(kw.value, ast.Constant):
                        name = kw.value.value
                found.append((module, node.name, *registries[dec.func.value.id], name))
    return found


REGISTERED = _registered_in_source()


@pytest.mark.parametrize('module,obj,reg_module,reg_attr,name', REGISTERED, ids=[f'{r[3]}:{r[4]}' for r in REGISTERED])
def test_import_registers(module, obj, reg_module, reg_attr, name):
    package = next((p for p in OPT_IN if module.startswith(p + '.')), 'orl_plugin')
    importlib.import_module(package)
    registry = getattr(importlib.import_module(reg_module), reg_attr)
    # `_module_dict` only: a name found in a parent registry would hide a missing import.
    assert name in registry.module_dict, \
        f'{name} ({module}) is not registered in {reg_module}.{reg_attr} by `import ' \
        f'{package}`: is its module imported by its package __init__.py?'
    assert registry.module_dict[name] is getattr(importlib.import_module(module), obj)


def _defined_classes() -> set:
    names = set()
    for path in glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        names.update(node.name for node in tree.body if isinstance(node, ast.ClassDef))
    return names


# Components the design names: each must be defined in the package and registered.
_CONTRACT = [
    ('SceneImageDataset', 'mmpretrain.registry', 'DATASETS'),
    ('ORLDataset', 'mmpretrain.registry', 'DATASETS'),
    ('ORL', 'mmpretrain.registry', 'MODELS'),
]


@pytest.mark.parametrize('name,reg_module,reg_attr', _CONTRACT, ids=[c[0] for c in _CONTRACT])
def test_contract_components_registered(name, reg_module, reg_attr):
    assert name in _defined_classes(), f'{name} is not defined in orl_plugin'
    importlib.import_module('orl_plugin')
    registry = getattr(importlib.import_module(reg_module), reg_attr)
    assert registry.get(name) is not None, f'{reg_module}.{reg_attr} has no {name}'


# --------------------------------------------------------------------------------------
# One definition of the views and of the image decoding for every stage.
# --------------------------------------------------------------------------------------
def _cfg(rel: str) -> Config:
    return Config.fromfile(osp.join(ROOT, 'configs', rel))


STAGE1_STAGE3 = [
    ('byol/byol_resnet50_8xb64-coslr-800e_coco.py', 'orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py', 224, 96),
    ('byol/byol_resnet50_8xb64-coslr-800e_coco-plus.py', 'orl/stage3/orl_resnet50_8xb64-coslr-800e_coco-plus.py', 224,
     96),
    ('byol/byol_resnet18_1xb32-coslr-30e_synthetic.py', 'orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py', 96, 48),
    ('orl/folder/byol_resnet50_8xb64-coslr-800e_folder.py', 'orl/folder/orl_resnet50_8xb64-coslr-800e_folder.py', 224,
     96),
    ('orl/folder/byol_resnet18_1xb32-coslr-30e_folder.py', 'orl/folder/orl_resnet18_1xb16-coslr-30e_folder.py', 96, 48),
]


@pytest.mark.parametrize(
    'stage1,stage3,view_size,patch_size', STAGE1_STAGE3, ids=[s3.split('/')[-1] for _, s3, _, _ in STAGE1_STAGE3])
def test_stage3_views_are_stage1_views(stage1, stage3, view_size, patch_size):
    """The stage-3 image views are the stage-1 views; the RoI patches differ only where the paper
    says (a box resized to the patch size by RoICrop instead of RandomResizedCrop)."""
    multi_view = _cfg(stage1).train_dataloader.dataset.pipeline[1]
    orl_views = _cfg(stage3).train_dataloader.dataset.pipeline[1]
    # MultiView, or ImageViews (the views cut from the decoded image, as ORLViews cuts them)
    assert multi_view.type in ('MultiView', 'ImageViews') and orl_views.type == 'ORLViews'
    views = multi_view.transforms if multi_view.type == 'MultiView' else multi_view.pipelines
    assert multi_view.get('photometric', 'pil') == orl_views.get('photometric', 'pil')
    assert orl_views.img_pipelines == views
    for view in views:  # the official RandomResizedCrop(224, interpolation=2): PIL bilinear
        assert view[0] == dict(
            type='RandomResizedCrop',
            scale=view_size,
            crop_ratio_range=(0.08, 1.),
            interpolation='bilinear',
            backend='pillow')
    assert [p[0] for p in orl_views.patch_pipelines] == [dict(type='RoICrop', size=patch_size)] * 2
    assert [p[1:] for p in orl_views.patch_pipelines] == [v[1:] for v in views]
    # BYOL's asymmetry: blur 1.0 / 0.1, solarize 0.0 / 0.2; everything else the same
    blur, solarize = ([[t.prob for t in v if t.type == kind][0] for v in views]
                      for kind in ('GaussianBlur', 'Solarize'))
    assert blur == [1.0, 0.1] and solarize == [0.0, 0.2]
    assert views[0][:4] == views[1][:4]


def _plugin_configs() -> List[str]:
    return [
        osp.relpath(p, osp.join(ROOT, 'configs')) for p in CONFIGS
        if not _is_base_fragment(p) and '/benchmarks/' not in p
    ]


def _loaders(node, found):
    """Every transform dict that reads image files, anywhere under ``node``."""
    if isinstance(node, dict):
        if node.get('type') in ('LoadImageFromFile', 'LoadImageOrSkip'):
            found.append(node)
        for v in node.values():
            _loaders(v, found)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _loaders(v, found)
    return found


@pytest.mark.parametrize('rel', _plugin_configs())
def test_every_stage_decodes_images_the_same_way(rel):
    """One loader everywhere: LoadImageOrSkip with PIL, the official Image.open().convert('RGB');
    stage 3's ORLDataset decodes its images itself, with the same backend."""
    cfg = _cfg(rel)
    loaders = _loaders([cfg.get('train_dataloader'), cfg.get('test_dataloader')], [])
    dataset = (cfg.get('train_dataloader') or {}).get('dataset', {})
    # The ResNet-50 stage-1 and stage-3 training configs (COCO, COCO+, a folder; CPU- and GPU-side
    # augmentation) decode with OpenCV, which gives PIL's pixels exactly on JPEG
    # (test_decoding.py::test_jpeg_pixels_are_the_same_with_both_backends), for loader speed.
    # (orl-mocov2_* is stage 3 with the contrastive objective, on the same views)
    backend = 'cv2' if any(fnmatch.fnmatch(rel, p) for p in ('*/byol_resnet50_*', '*/orl*_resnet50_*')) else 'pillow'
    if dataset.get('type') == 'ORLDataset':
        assert dataset.imdecode_backend == backend and not loaders
    else:
        assert loaders and all(t == dict(type='LoadImageOrSkip', imdecode_backend=backend) for t in loaders), loaders


# --------------------------------------------------------------------------------------
# Initialisation: the official one on the COCO models, mmpretrain's on the CPU models.
# --------------------------------------------------------------------------------------
def _build(model_cfg):
    from mmpretrain.registry import MODELS

    import orl_plugin  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(model_cfg)


def _assert_kaiming_fan_in(name: str, w: torch.Tensor) -> None:
    """``w`` looks drawn from N(0, 2 / fan_in) (the ReLU gain): its std within 4 standard errors
    of sqrt(2 / fan_in), mean near 0, and tails a uniform draw of that std cannot have."""
    n, fan_in = w.numel(), w[0].numel()
    std = math.sqrt(2.0 / fan_in)
    assert abs(w.std().item() / std - 1) < 4 / math.sqrt(2 * n), f'{name}: std {w.std():.4g}, want {std:.4g}'
    assert abs(w.mean().item()) < 4 * std / math.sqrt(n), f'{name}: mean {w.mean():.3g}'
    assert w.abs().max().item() > 2.5 * std, f'{name}: no normal tail'  # uniform: |w| <= 1.73 std


def test_official_init_statistics():
    """The COCO/COCO+ stage-3 model (and so stage 1's, which shares the fragment) initialises as the
    official code: every Conv2d and Linear weight Kaiming normal with fan_in and the ReLU gain,
    Linear biases 0, BN weight 1 and bias 0."""
    cfg = _cfg('orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py')
    stage1 = _cfg('byol/byol_resnet50_8xb64-coslr-800e_coco.py').model
    for part in ('backbone', 'neck'):
        assert stage1[part].init_cfg == cfg.model[part].init_cfg
    assert stage1.head.predictor.init_cfg == cfg.model.head.predictor.init_cfg
    torch.manual_seed(0)
    model = _build(cfg.model)
    model.init_weights()
    seen = {'conv': 0, 'linear': 0, 'bn': 0}
    for name, m in model.named_modules():
        if name.startswith('target_net'):  # CosineEMA copies the online network at its first update
            continue
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            _assert_kaiming_fan_in(name, m.weight)
            assert m.bias is None or torch.all(m.bias == 0), name
            seen['conv' if isinstance(m, torch.nn.Conv2d) else 'linear'] += 1
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
            seen['bn'] += 1
    # ResNet-50: 53 convs; projector + 3 predictors: 2 Linear layers each
    assert seen == {'conv': 53, 'linear': 8, 'bn': 53 + 4}


@pytest.mark.parametrize(
    'rel', ['byol/byol_resnet18_1xb32-coslr-30e_synthetic.py', 'orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py'])
def test_cpu_models_initialise_as_before(rel):
    """The CPU models keep mmpretrain's default init (the configs were tuned with it): the same
    weights, seed for seed, as the model config of commit a2956d7 (no init_cfg)."""
    from config_snapshot import decode, load
    old = decode(load(osp.join(ROOT, 'tests', 'data', 'configs_a2956d7.json'))['configs'][rel]['model'])
    weights = []
    for model_cfg in (_cfg(rel).model, old):
        torch.manual_seed(0)
        model = _build(model_cfg)
        model.init_weights()
        weights.append(model.state_dict())
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
