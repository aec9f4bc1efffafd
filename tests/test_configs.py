"""Every config loads; top-level configs load the plugin; importing the plugin registers its parts."""
import ast
import glob
import importlib
import os
import os.path as osp
from typing import Dict, List, Tuple

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'orl_plugin')
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))


def _is_base_fragment(path: str) -> bool:
    return '_base_' in osp.relpath(path, ROOT).split(os.sep)


def _dataloaders(cfg: Config) -> Dict[str, dict]:
    return {key: cfg[key] for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
            if isinstance(cfg.get(key), dict)}


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
                        and dec.func.attr == 'register_module'
                        and isinstance(dec.func.value, ast.Name)
                        and dec.func.value.id in registries):
                    continue
                name = node.name
                for kw in dec.keywords:
                    if kw.arg == 'name' and isinstance(kw.value, ast.Constant):
                        name = kw.value.value
                found.append((module, node.name, *registries[dec.func.value.id], name))
    return found


REGISTERED = _registered_in_source()


@pytest.mark.parametrize('module,obj,reg_module,reg_attr,name', REGISTERED,
                         ids=[f'{r[3]}:{r[4]}' for r in REGISTERED])
def test_import_registers(module, obj, reg_module, reg_attr, name):
    importlib.import_module('orl_plugin')
    registry = getattr(importlib.import_module(reg_module), reg_attr)
    # `_module_dict` only: a name found in a parent registry would hide a missing import.
    assert name in registry.module_dict, \
        f'{name} ({module}) is not registered in {reg_module}.{reg_attr} by `import ' \
        'orl_plugin`: is its module imported by its package __init__.py?'
    assert registry.module_dict[name] is getattr(importlib.import_module(module), obj)


def _defined_classes() -> set:
    names = set()
    for path in glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
        names.update(node.name for node in tree.body if isinstance(node, ast.ClassDef))
    return names


# Components the team contract names: registered once their module exists.
_CONTRACT = [
    ('SceneImageDataset', 'mmpretrain.registry', 'DATASETS'),
    ('ORLDataset', 'mmpretrain.registry', 'DATASETS'),
    ('ORL', 'mmpretrain.registry', 'MODELS'),
]


@pytest.mark.parametrize('name,reg_module,reg_attr', _CONTRACT, ids=[c[0] for c in _CONTRACT])
def test_contract_components_registered(name, reg_module, reg_attr):
    if name not in _defined_classes():
        pytest.skip(f'{name} is not defined in orl_plugin yet')
    importlib.import_module('orl_plugin')
    registry = getattr(importlib.import_module(reg_module), reg_attr)
    assert registry.get(name) is not None, f'{reg_module}.{reg_attr} has no {name}'
