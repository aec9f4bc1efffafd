"""OpenMMLab's package conventions: the wheel carries configs, tools and the model index under
orl_plugin/.mim, and mim finds them from any directory, after a wheel or an editable install; the wheel needs
nothing of projects/."""
import ast
import glob
import importlib.util
import os
import os.path as osp
import pathlib
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest
import torch
import yaml
from helpers import ROOT

BIN = osp.dirname(sys.executable)
CPU_BYOL = 'byol_resnet18_1xb32-coslr-30e_synthetic.py'


def _tree_files():
    """The checkout's files as git sees them (tracked and new, not ignored); a plain walk outside git."""
    proc = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                          cwd=ROOT,
                          capture_output=True)
    if proc.returncode == 0:
        return [f for f in proc.stdout.decode().split('\0') if f and osp.lexists(osp.join(ROOT, f))]
    skip = {'.git', 'work_dirs', 'data', 'build', 'dist', '__pycache__', '.venv'}
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [
            d for d in dirnames
            if d not in skip and not d.endswith('.egg-info') and not osp.islink(osp.join(dirpath, d))
        ]
        # symlinks (orl_plugin/.mim/*) are copied as links, files as files
        files += [
            osp.relpath(osp.join(dirpath, f), ROOT) for f in os.listdir(dirpath)
            if osp.islink(osp.join(dirpath, f)) or f in filenames
        ]
    return files


def _pip(*args, cwd):
    proc = subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
                          cwd=cwd,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """A copy of the checkout (builds write build/ and *.egg-info next to the sources)."""
    src = tmp_path_factory.mktemp('src')
    for rel in _tree_files():
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if osp.islink(osp.join(ROOT, rel)):
            os.symlink(os.readlink(osp.join(ROOT, rel)), dst)
        else:
            shutil.copy2(osp.join(ROOT, rel), dst)
    return str(src)


@pytest.fixture(scope='module')
def wheel(source, tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    _pip('wheel', '--no-deps', '--no-build-isolation', '--no-index', '-w', str(out), source, cwd=str(out))
    (path, ) = glob.glob(str(out / '*.whl'))
    return path


def _mim(args, pythonpath, cwd, timeout=300):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(pythonpath),
        OMP_NUM_THREADS='1',
        PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    proc = subprocess.run([osp.join(BIN, 'mim'), *args],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'mim {" ".join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout + proc.stderr


def _model_names():
    names = []
    for path in glob.glob(osp.join(ROOT, 'configs', '**', 'metafile.yml'), recursive=True):
        with open(path) as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    return names


def test_wheel_carries_configs_tools_and_model_index(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    expected = {'orl_plugin/.mim/model-index.yml'}
    for folder, suffixes in (('configs', ('.py', '.yml')), ('tools', ('.py', '.sh'))):
        for path in glob.glob(osp.join(ROOT, folder, '**', '*'), recursive=True):
            if path.endswith(suffixes):
                expected.add('orl_plugin/.mim/' + osp.relpath(path, ROOT))
    assert len(expected) > 40 and expected <= names, sorted(expected - names)
    assert 'orl_plugin/.mim/configs/byol/' + CPU_BYOL in names
    assert not [n for n in names if n.endswith('.pyc')]


def test_the_wheel_needs_no_project(wheel):
    """projects/ (examples, the evidence harness) is not in the wheel, and nothing in it imports a project module
    or, for a config, names one (custom_imports, _base_)."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert not [n for n in names if n.split('/')[0] == 'projects' or '/projects/' in n]
        sources = {n: ast.parse(z.read(n).decode(), n) for n in names if n.endswith('.py')}
    assert any(n.startswith('orl_plugin/.mim/configs/') for n in sources)
    for name, tree in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.split('.')[0] == 'projects'], name
            elif isinstance(node, ast.ImportFrom) and not node.level:
                assert (node.module or '').split('.')[0] != 'projects', name
            elif name.startswith('orl_plugin/.mim/configs/') and isinstance(node, ast.Constant):
                assert not str(node.value).startswith('projects.') and 'projects/' not in str(node.value), name


def test_mim_after_a_wheel_install(wheel, tmp_path, synthetic_scenes):
    target = str(tmp_path / 'site')
    _pip('install', '--no-deps', '--no-index', '--target', target, wheel, cwd=str(tmp_path))
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()

    out = _mim(['search', 'orl-plugin'], [target], str(cwd))
    for name in _model_names():
        assert f'config id: {name}\n' in out, name

    # train a config by its name: 1 epoch of 2 iterations at 32 px on the tiny scenes
    work_dir = str(tmp_path / 'work')
    options = [
        f'train_dataloader.dataset.data_root={synthetic_scenes["out_dir"]}', 'train_dataloader.batch_size=3',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
        'default_hooks.checkpoint.interval=1', 'randomness.seed=0', 'log_level=WARNING',
        'train_dataloader.dataset.pipeline.1.transforms.0.0.scale=32',
        'train_dataloader.dataset.pipeline.1.transforms.1.0.scale=32'
    ]
    out = _mim([
        'train', 'orl-plugin', CPU_BYOL, '--gpus', '0', '--work-dir', work_dir, '--auto-scale-lr', '--cfg-options',
        *options
    ], [target], str(cwd))
    config = osp.join(target, 'orl_plugin', '.mim', 'configs', 'byol', CPU_BYOL)
    assert f'will use {config} instead' in out
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    # mim passed --auto-scale-lr to the plugin's train.py: lr 0.05 for a batch of 32, so 0.05 x 3 / 32
    assert ckpt['optimizer']['param_groups'][0]['initial_lr'] == pytest.approx(0.05 * 3 / 32)

    # a tool by its name: the pipeline finds the installed configs and tools
    out = _mim(['run', 'orl-plugin', 'pipeline', 'synthetic', '--dry-run'], [target], str(cwd))
    mim_dir = osp.join(target, 'orl_plugin', '.mim')
    assert f'{mim_dir}/tools/train.py {mim_dir}/configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py' \
        in out, out[-3000:]


def test_mim_after_an_editable_install(source, tmp_path, synthetic_scenes):
    prefix = str(tmp_path / 'prefix')
    _pip(
        'install',
        '--no-deps',
        '--no-build-isolation',
        '--no-index',
        '--ignore-installed',
        '-e',
        source,
        '--prefix',
        prefix,
        cwd=str(tmp_path))
    (dist_info, ) = glob.glob(osp.join(prefix, 'lib', 'python*', 'site-packages', 'orl_plugin-*.dist-info'))
    site = osp.dirname(dist_info)
    # what `make install` runs after `pip install -e`, as the copy's own module
    copy = osp.join(source, 'orl_plugin', 'utils', 'mim_files.py')
    spec = importlib.util.spec_from_file_location('copy_mim_files', copy)
    copy_mim_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy_mim_files)
    link = copy_mim_files.link_editable_install(metadata.PathDistribution(pathlib.Path(dist_info)))
    assert link == osp.join(site, 'orl-plugin')
    assert os.readlink(link) == osp.join(source, 'orl_plugin')
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()
    path = [site, source]

    out = _mim(['search', 'orl-plugin'], path, str(cwd))
    assert all(f'config id: {name}\n' in out for name in _model_names())

    # test a config by its name: selective search (no checkpoint) on the tiny scenes
    store = str(tmp_path / 'ss.orlstore')
    out = _mim([
        'test', 'orl-plugin', 'selective-search_synthetic.py', '--checkpoint', 'none', '--gpus', '0', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', f'test_dataloader.dataset.data_root={synthetic_scenes["out_dir"]}',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False', f'test_evaluator.out_file={store}',
        'log_level=WARNING'
    ], path, str(cwd))
    assert f'will use {osp.join(source, "configs", "orl", "stage2", "selective-search_synthetic.py")}' in out
    assert osp.isfile(osp.join(store, 'header.json'))


def test_link_editable_install_is_idempotent(tmp_path):
    from orl_plugin.utils import mim_files
    dist_info = tmp_path / 'site' / 'orl_plugin-0.1.0.dist-info'
    dist_info.mkdir(parents=True)
    dist = metadata.PathDistribution(pathlib.Path(dist_info))
    assert mim_files.link_editable_install(dist) is None  # no direct_url.json: not editable
    (dist_info / 'direct_url.json').write_text('{"url": "file:///x", "dir_info": {"editable": true}}')
    link = str(tmp_path / 'site' / 'orl-plugin')
    os.symlink('/elsewhere', link)  # a stale link from an older checkout
    assert mim_files.link_editable_install(dist) == link == mim_files.link_editable_install(dist)
    assert os.readlink(link) == mim_files.PACKAGE_DIR
    os.remove(link)
    os.mkdir(link)
    with pytest.raises(FileExistsError, match='is not a symlink'):
        mim_files.link_editable_install(dist)
    assert mim_files.files_root() == ROOT


def test_link_finds_the_editable_install_behind_the_checkouts_egg_info(tmp_path, monkeypatch):
    """``make install`` runs the linker from the checkout, whose ``orl_plugin.egg-info`` (left by the
    editable build, no direct_url.json) comes first on sys.path: the editable one must win."""
    from orl_plugin.utils import mim_files
    checkout, site = tmp_path / 'checkout', tmp_path / 'site'
    (checkout / 'orl_plugin.egg-info').mkdir(parents=True)
    (checkout / 'orl_plugin.egg-info' / 'PKG-INFO').write_text('Metadata-Version: 2.1\nName: orl-plugin\n')
    dist_info = site / 'orl_plugin-0.1.0.dist-info'
    dist_info.mkdir(parents=True)
    (dist_info / 'METADATA').write_text('Metadata-Version: 2.1\nName: orl-plugin\n')
    (dist_info / 'direct_url.json').write_text('{"url": "file:///x", "dir_info": {"editable": true}}')
    monkeypatch.setattr(sys, 'path', [str(checkout), str(site)])
    assert mim_files.link_editable_install() == str(site / 'orl-plugin')
    assert os.readlink(site / 'orl-plugin') == mim_files.PACKAGE_DIR
