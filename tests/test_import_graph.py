"""The package's import graph: no circles, no layer imports one above it, and nothing shipped needs ``projects/``.

Layers, top to bottom: pipeline -> engine -> models / evaluation -> datasets -> store -> utils. The edges are read
from the source (``ast``), so an import inside a function counts as much as one at the top. ``projects/``
(examples and the evidence harness) builds on the package; the package, its tools and its configs never
import it (the wheel does not carry it).
"""
import ast
import glob
import os
import os.path as osp
from typing import Dict, List, Set

import pytest
from helpers import ROOT

PACKAGE = osp.join(ROOT, 'orl_plugin')
CONFIGS = osp.join(ROOT, 'configs')

# (importing subpackage, subpackages it must never import)
FORBIDDEN = {
    'utils': ('store', 'datasets', 'models', 'evaluation', 'engine', 'pipeline', 'visualization', 'transfer'),
    'store': ('datasets', 'models', 'evaluation', 'engine', 'pipeline', 'visualization', 'transfer'),
    'datasets': ('models', 'evaluation', 'engine', 'pipeline', 'transfer'),
    'models': ('datasets', 'engine', 'pipeline', 'transfer'),
    'evaluation': ('engine', 'pipeline', 'transfer'),
    'engine': ('pipeline', ),
}


def module_name(path: str) -> str:
    rel = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def all_modules() -> Dict[str, str]:
    paths = glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True)
    return {module_name(p): p for p in paths if '.mim' not in p}


def imports_of(name: str, path: str, modules: Set[str]) -> Set[str]:
    """The orl_plugin modules ``path`` imports, relative imports resolved; ``from a import b`` counts as
    ``a.b`` when that is a module, else as ``a``."""
    package = name.split('.') if path.endswith('__init__.py') else name.split('.')[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = '.'.join(base + ([node.module] if node.module else []))
            targets = [f'{mod}.{a.name}' if f'{mod}.{a.name}' in modules else mod for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules)
    return found - {name}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + '.')


@pytest.fixture(scope='module')
def graph() -> Dict[str, Set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def test_the_graph_is_read(graph):
    assert len(graph) > 60
    assert 'orl_plugin.utils.atomic' in graph['orl_plugin.store']
    assert 'orl_plugin.store' in graph['orl_plugin.pipeline.records']


def test_no_import_circle(graph):
    # A package's __init__ importing its own modules is how registration works; the circle that breaks
    # imports is a module reaching, directly or through other modules, back to itself.
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = path[path.index(m):] + [m]
                # a subpackage's own __init__ -> its module -> the same __init__ is not a circle of modules
                if not all(c == cycle[0] or c.startswith(cycle[0] + '.') for c in cycle):
                    raise AssertionError('import circle: ' + ' -> '.join(cycle))
            elif m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


@pytest.mark.parametrize('layer', sorted(FORBIDDEN))
def test_no_layer_imports_upward(graph, layer):
    prefix = f'orl_plugin.{layer}'
    banned = tuple(f'orl_plugin.{b}' for b in FORBIDDEN[layer])
    bad = {(n, m) for n, deps in graph.items() if _inside(n, prefix) for m in deps if any(
        _inside(m, b) for b in banned)}
    assert not bad, '\n'.join(f'{n} imports {m}' for n, m in sorted(bad))


def _absolute_imports(path: str) -> Set[str]:
    """Every module name ``path`` imports absolutely (``import a.b``, ``from a.b import c``)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


def _is_projects(module: str) -> bool:
    return module == 'projects' or module.startswith('projects.')


@pytest.mark.parametrize('folder', ['orl_plugin', 'tools'])
def test_nothing_shipped_imports_projects(folder):
    paths = [p for p in glob.glob(osp.join(ROOT, folder, '**', '*.py'), recursive=True) if '.mim' not in p]
    assert paths
    bad = {osp.relpath(p, ROOT): sorted(m for m in _absolute_imports(p) if _is_projects(m)) for p in paths}
    assert not {k: v for k, v in bad.items() if v}


def _strings_assigned(path: str, name: str) -> List[str]:
    """The string constants in every top-level assignment to ``name`` of a config file."""
    found: List[str] = []
    for node in ast.parse(open(path).read(), path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found += [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return found


def test_no_shipped_config_imports_or_inherits_projects():
    paths = glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    imports = {p: _strings_assigned(p, 'custom_imports') for p in paths}
    assert sum(bool(v) for v in imports.values()) >= 10  # the configs were read (the others inherit theirs)
    bad = {osp.relpath(p, ROOT): v for p, v in imports.items() if any(_is_projects(m) for m in v)}
    assert not bad, bad
    bases = {osp.relpath(p, ROOT): [b for b in _strings_assigned(p, '_base_') if 'projects/' in b] for p in paths}
    assert not {k: v for k, v in bases.items() if v}
