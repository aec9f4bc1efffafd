"""The folder map of docs/en/get_started.md names every module and subpackage of ``orl_plugin``, every config folder
and every project, and names nothing that is not there."""
import glob
import os
import os.path as osp
import re

from helpers import ROOT


def folder_map() -> str:
    text = open(osp.join(ROOT, 'docs', 'en', 'get_started.md')).read()
    section = text.split('## Folder map', 1)[1]
    return section.split('```', 2)[1]


def test_the_map_names_every_package_module_and_folder():
    text = folder_map()
    named = set(re.findall(r'([A-Za-z_][\w.]*(?:\.py|/))', text))
    package = osp.join(ROOT, 'orl_plugin')
    entries = [osp.basename(p) for p in glob.glob(osp.join(package, '*.py')) if osp.basename(p) != '__init__.py']
    entries += [
        name + '/' for name in os.listdir(package)
        if osp.isdir(osp.join(package, name)) and not name.startswith(('_', '.'))
    ]
    missing = [e for e in entries if e not in named and not any(n.endswith('/' + e) for n in named)]
    assert not missing, f'not in the folder map of docs/en/get_started.md: {missing}'
    for sub in ('datasets/transforms/', 'engine/runners/', 'engine/hooks/', 'models/data_preprocessors/'):
        assert osp.isdir(osp.join(package, sub)) and osp.basename(sub.rstrip('/')) + '/' in text, sub
    for folder in ('byol', 'mocov2', 'orl/stage2', 'orl/stage3', 'orl/folder', 'benchmarks/mmdetection'):
        assert osp.isdir(osp.join(ROOT, 'configs', folder)), folder
        assert folder.split('/')[-1] in text, folder
    actual = {osp.basename(p) for p in glob.glob(osp.join(ROOT, 'configs', '*')) if osp.isdir(p)}
    assert actual <= {'_base_', 'byol', 'mocov2', 'orl', 'benchmarks'}, actual
    projects = [osp.basename(p) for p in glob.glob(osp.join(ROOT, 'projects', '*')) if osp.isdir(p)]
    assert 'orl_evidence' in projects and all(f'{p}/' in text for p in projects), projects


def test_every_module_the_map_names_exists():
    for name in re.findall(r'^  ([a-z_]+\.py)\b', folder_map(), flags=re.M):
        assert osp.isfile(osp.join(ROOT, 'orl_plugin', name)), name
    for name in re.findall(r'^  ([a-z_]+)/', folder_map(), flags=re.M):
        assert osp.isdir(osp.join(ROOT, 'orl_plugin', name)), name
