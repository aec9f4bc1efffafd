"""The tools' error policy (orl_plugin.utils.error_policy): a known error is one line naming the full path and the
field, exit status 2, no traceback; --debug shows the traceback; a bug keeps its traceback."""
import importlib.util
import json
import os.path as osp
import pickle
import subprocess
import sys

import pytest
from helpers import ROOT

from orl_plugin.utils.error_policy import InputError, check_out_file, error_line, is_known_error, run_cli


def _tool(rel_path: str):
    spec = importlib.util.spec_from_file_location('orl_cli_' + osp.basename(rel_path)[:-3],
                                                  osp.join(ROOT, 'tools', rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


to_store = _tool('dataset_converters/orl_json_to_store.py')
to_json = _tool('dataset_converters/store_to_orl_json.py')


def _one_line_error(main, argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    out = capsys.readouterr()
    assert exit_info.value.code == 2
    assert out.err.count('\n') == 1 and out.err.startswith('error: '), out.err
    assert 'Traceback' not in out.err + out.out
    return out.err


def _knn_json(path, n=3, k=2, **changes):
    data = {
        'info': {'knn_image_num': k}, 'images': {'file_name': [f'{i}.jpg' for i in range(n)], 'id': list(range(n))},
        'pseudo_annotations': {
            'image_id': list(range(n)), 'knn_image_id': [[(i + 1) % n, (i + 2) % n] for i in range(n)]
        }
    }
    data.update(changes)
    with open(path, 'w') as f:
        json.dump(data, f)
    return str(path)


def test_converter_errors_are_one_line_with_full_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths on the command line, as users type them
    (tmp_path / 'in').mkdir()
    full = str(tmp_path / 'in' / 'knn.json')

    # a missing field
    _knn_json(full, info={})
    err = _one_line_error(to_store.main, ['in/knn.json', 'out.orlstore'], capsys)
    assert f'error: {full}: field "info.knn_image_num" is missing' in err

    # not JSON at all
    (tmp_path / 'in' / 'knn.json').write_text('{"info": [1, 2')
    err = _one_line_error(to_store.main, ['in/knn.json', 'out.orlstore'], capsys)
    assert err.startswith(f'error: {full}: not valid JSON')

    # an image list that does not match the file's
    _knn_json(full)
    images = tmp_path / 'in' / 'instances.json'
    images.write_text(json.dumps({'images': [{'file_name': f'{i}.jpg', 'id': i} for i in range(4)]}))
    err = _one_line_error(to_store.main, ['in/knn.json', 'out.orlstore', '--images', 'in/instances.json'], capsys)
    assert f'error: {full}: has 3 images but the given image list has 4' in err

    # a missing input
    err = _one_line_error(to_json.main, ['in/nothing.orlstore', 'out.json'], capsys)
    assert str(tmp_path / 'in' / 'nothing.orlstore') in err
    assert not osp.exists(tmp_path / 'out.orlstore') and not osp.exists(tmp_path / 'out.json')


def test_debug_shows_the_traceback(tmp_path):
    """The real command line in a subprocess: one line and status 2; with --debug the exception
    propagates (Python prints its traceback, status 1)."""
    bad = _knn_json(tmp_path / 'knn.json', info={})
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'dataset_converters', 'orl_json_to_store.py'), bad,
        str(tmp_path / 'out.orlstore')
    ]
    env = {'PYTHONPATH': ROOT, 'PATH': osp.dirname(sys.executable), 'OMP_NUM_THREADS': '1'}
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f'error: {bad}: field "info.knn_image_num" is missing (--debug shows the traceback)'
    ]
    with pytest.raises(ValueError, match='info.knn_image_num'):  # OfficialFormatError
        run_cli(to_store.main, cmd[2:] + ['--debug'])


def test_train_and_test_name_the_full_config_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train = _tool('train.py')
    err = _one_line_error(train.main, ['configs/missing.py'], capsys)
    assert str(tmp_path / 'configs' / 'missing.py') in err
    test = _tool('test.py')
    (tmp_path / 'broken.py').write_text('model = dict(type=\n')
    err = _one_line_error(test.main, ['broken.py'], capsys)
    assert err.startswith(f"error: {tmp_path / 'broken.py'}: syntax error in line 1: '(' was never closed")


def _raise_in_plugin(exc):
    """Raise ``exc`` from a frame in the plugin's package, as its input checks do."""
    code = compile('raise exc', osp.join(ROOT, 'orl_plugin', 'datasets', 'scene_dataset.py'), 'exec')
    try:
        exec(code, {'exc': exc})
    except Exception as e:  # noqa: BLE001
        return e


def test_known_and_unknown_errors(tmp_path, capsys):
    assert is_known_error(FileNotFoundError(2, 'No such file or directory', 'x.json'))
    assert is_known_error(InputError('--index 9 out of range'))
    assert is_known_error(json.JSONDecodeError('Expecting value', 'doc', 0))
    assert is_known_error(_raise_in_plugin(ValueError('a.json: images[0] is missing field "id"')))
    # the same types raised elsewhere, and bug-like types anywhere, are bugs: traceback
    assert not is_known_error(ValueError('operands could not be broadcast'))
    assert not is_known_error(_raise_in_plugin(TypeError('unsupported operand')))
    assert not is_known_error(KeyError('x'))

    def buggy(argv):
        raise TypeError('a bug')

    with pytest.raises(TypeError, match='a bug'):
        run_cli(buggy, [])

    # an input error inside a data-loader worker arrives as the worker's traceback text
    worker = ValueError('Caught ValueError in DataLoader worker process 0.\n'
                        'Original Traceback (most recent call last):\n'
                        f'  File "{ROOT}/orl_plugin/datasets/scene_dataset.py", line 3, in load\n'
                        '    raise ValueError(msg)\n'
                        'ValueError: data/a.json: annotations[3] is missing field "bbox"\n')
    assert is_known_error(worker)
    assert error_line(worker) == 'data/a.json: annotations[3] is missing field "bbox"'

    # a checkpoint weights_only refuses: what it refused, not torch's page of advice
    refused = pickle.UnpicklingError('Weights only load failed. This file can still be loaded...\n'
                                     'Please file an issue...\n\n'
                                     'WeightsUnpickler error: Unsupported global: GLOBAL evil.Payload '
                                     'was not an allowed global by default.\n')
    line = error_line(refused, [str(tmp_path / 'ckpt.pth')])
    assert line == ('cannot be loaded with weights_only=True: WeightsUnpickler error: Unsupported '
                    'global: GLOBAL evil.Payload was not an allowed global by default.')


def test_out_file_check(tmp_path, monkeypatch):
    """A result file may go to a folder that does not exist yet (nothing is created by the check); a folder,
    a name ending in a separator or a path below a file is refused."""
    monkeypatch.chdir(tmp_path)
    assert check_out_file('new/deeper/r.json') == str(tmp_path / 'new' / 'deeper' / 'r.json')
    assert not (tmp_path / 'new').exists()
    (tmp_path / 'runs').mkdir()
    (tmp_path / 'a_file').write_text('x')
    for bad, why in (('runs', 'is a folder'), ('later/', 'is a folder'), ('a_file/r.json', 'is a file, not a folder'),
                     ('', 'give a file path')):
        with pytest.raises(InputError, match=why):
            check_out_file(bad)
