"""tools/analysis_tools/check_images.py reports every kind of file of a real folder correctly."""
import importlib.util
import json
import os.path as osp
import sys

import numpy as np
import pytest
from helpers import ROOT
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.utils.error_policy import run_cli


def _tool():
    spec = importlib.util.spec_from_file_location('orl_check_images',
                                                  osp.join(ROOT, 'tools', 'analysis_tools', 'check_images.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its functions are sent to the decoding processes by name
    spec.loader.exec_module(module)
    return module


def test_each_category_reported(mixed_images, tmp_path, capsys):
    tool = _tool()
    out, report = str(tmp_path / 'clean.json'), str(tmp_path / 'report.json')
    assert tool.main([mixed_images['folder'], '--workers', '2', '--out', out, '--report', report]) == 0
    printed = capsys.readouterr().out
    with open(report) as f:
        rep = json.load(f)
    assert rep['num_images'] == 13 and rep['num_readable'] == 10
    assert {u['file_name']: u['kind'] for u in rep['unreadable']} == mixed_images['bad']
    assert all(u['reason'] for u in rep['unreadable'])
    assert rep['grey'] == ['grey.png']
    assert rep['alpha'] == ['rgba.png']
    assert rep['cmyk'] == ['cmyk.jpg']
    assert rep['sixteen_bit'] == ['sixteen.png']
    assert rep['exif_rotated'] == ['exif_rotated.jpg']
    assert rep['small'] == ['tiny.png']  # 20x15 < 96; every other readable image is >= 96
    sizes = rep['sizes']
    assert sizes['width'][0] == 20 and sizes['width'][-1] == 3000
    assert sizes['height'][0] == 15 and sizes['height'][-1] == 2000
    hist = {b['range']: b['count'] for b in sizes['long_side_histogram']}
    assert hist['0-95'] == 1 and hist['96-255'] == 8 and sum(hist.values()) == 10
    # The report names each file with its category and how it is read.
    for name in list(
            mixed_images['bad']) + ['grey.png', 'rgba.png', 'cmyk.jpg', 'sixteen.png', 'exif_rotated.jpg', 'tiny.png']:
        assert name in printed
    assert 'raw pixel orientation' in printed and 'high byte' in printed

    # The clean list is an image list the data sets read: the 10 readable files, in order.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(
            dict(
                type='SceneImageDataset',
                ann_file=out,
                data_prefix=dict(img_path=mixed_images['folder']),
                pipeline=[dict(type='LoadImageOrSkip')]))
    assert [ds.get_data_info(i)['file_name'] for i in range(len(ds))] == mixed_images['good']
    assert all(ds[i]['img'].dtype == np.uint8 for i in range(len(ds)))


def test_json_source_keeps_annotations(synthetic_scenes, tmp_path, capsys):
    tool = _tool()
    out = str(tmp_path / 'clean.json')
    ann = synthetic_scenes['ann_file']
    assert tool.main([ann, '--img-dir', synthetic_scenes['image_dir'], '--workers', '1', '--out', out]) == 0
    with open(ann) as f:
        src = json.load(f)
    with open(out) as f:
        clean = json.load(f)
    assert [im['id'] for im in clean['images']] == [im['id'] for im in src['images']]
    assert clean['annotations'] == src['annotations']
    assert clean['categories'] == src['categories']
    with pytest.raises(SystemExit) as info:
        run_cli(tool.main, [str(tmp_path / 'missing_dir')])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(f'error: {tmp_path / "missing_dir"}: no such folder or file')
