"""Resolved configs as JSON: what ``tests/test_tools/test_config_snapshot.py`` compares.

    python tests/test_tools/config_snapshot.py --configs DIR --source COMMIT --out tests/data/configs_a2956d7.json

writes every ``*.py`` config under ``DIR`` (``_base_`` fragments excepted), resolved with
``Config.fromfile(...).to_dict()``. Tuples are kept apart from lists (``{"__tuple__": [...]}``), so a
tuple that became a list is a difference too.
"""
import argparse
import glob
import json
import os
import os.path as osp
from typing import Any, Dict

from mmengine.config import Config

TUPLE = '__tuple__'


def encode(value: Any) -> Any:
    """JSON-ready copy of a resolved config value (tuples tagged, everything else as is)."""
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {TUPLE: [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f'a config value of type {type(value).__name__} has no JSON form: {value!r}')


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, dict):
        if set(value) == {TUPLE}:
            return tuple(decode(v) for v in value[TUPLE])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def shipped_configs(config_dir: str) -> Dict[str, str]:
    """{path relative to ``config_dir``: absolute path} of every config but the ``_base_`` fragments."""
    found = {}
    for path in sorted(glob.glob(osp.join(config_dir, '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, config_dir).replace(os.sep, '/')
        if '_base_' not in rel.split('/'):
            found[rel] = path
    return found


def resolve(path: str) -> Dict[str, Any]:
    return encode(Config.fromfile(path).to_dict())


def load(path: str) -> Dict[str, Any]:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', required=True, help='the configs/ folder to resolve')
    parser.add_argument('--out', required=True, help='.json file to write')
    parser.add_argument('--source', required=True, help='what the folder is (e.g. a commit), kept in the file')
    args = parser.parse_args()
    data = dict(source=args.source, configs={rel: resolve(path) for rel, path in shipped_configs(args.configs).items()})
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(data, f, sort_keys=True, indent=1)
        f.write('\n')
    print(f'{len(data["configs"])} configs -> {args.out} ({osp.getsize(args.out)} bytes)')


if __name__ == '__main__':
    main()
