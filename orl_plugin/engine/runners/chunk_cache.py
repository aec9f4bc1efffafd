"""The mining loops' chunk cache: a chunk's per-image result dicts as one ``.npz`` file, without pickle.

Result values must be numpy arrays (ragged along axis 0 is fine), numpy/Python scalars or strings.
"""
from typing import Any, Dict, List

import numpy as np

from orl_plugin.utils.atomic import atomic_open

__all__ = ['CACHE_FORMAT_VERSION', 'encode_results', 'decode_results', 'save_chunk', 'load_chunk', 'json_default']

CACHE_FORMAT_VERSION = 1


def encode_results(results: List[dict]) -> Dict[str, np.ndarray]:
    """Flatten per-image result dicts into named arrays (``np.savez`` without pickle).

    Per key ``k``: ``k.has`` (bool mask, only when some results lack ``k``), and either
    ``k.data`` + ``k.len`` (arrays, concatenated along axis 0) or ``k.val`` (scalars/strings).
    """
    keys = sorted({k for r in results for k in r})
    out: Dict[str, np.ndarray] = {'__n__': np.array(len(results), dtype=np.int64)}
    for k in keys:
        if '.' in k:
            raise ValueError(f'result key {k!r} must not contain a dot')
        has = np.array([k in r for r in results], dtype=bool)
        vals = [r[k] for r in results if k in r]
        if not has.all():
            out[f'{k}.has'] = has
        if all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in vals):
            dtypes = {v.dtype for v in vals}
            tails = {v.shape[1:] for v in vals}
            if len(dtypes) != 1 or len(tails) != 1:
                raise ValueError(f'result field {k!r}: arrays must share dtype and trailing '
                                 f'shape to be cached, got {dtypes} and {tails}')
            out[f'{k}.data'] = np.concatenate(vals, axis=0)
            out[f'{k}.len'] = np.array([len(v) for v in vals], dtype=np.int64)
        elif any(isinstance(v, (np.ndarray, list, tuple, dict)) and np.ndim(v) > 0 for v in vals):
            raise TypeError(f'result field {k!r} mixes arrays and scalars or holds '
                            'lists/dicts; use numpy arrays or scalars')
        else:
            out[f'{k}.val'] = np.array(vals)
    return out


def decode_results(arrays: Dict[str, np.ndarray]) -> List[dict]:
    """Inverse of :func:`encode_results`."""
    n = int(arrays['__n__'])
    results: List[dict] = [dict() for _ in range(n)]
    keys = sorted({name.rsplit('.', 1)[0] for name in arrays if name != '__n__'})
    for k in keys:
        has = arrays.get(f'{k}.has')
        owners = [i for i in range(n) if has is None or has[i]]
        if f'{k}.data' in arrays:
            data, lens = arrays[f'{k}.data'], arrays[f'{k}.len']
            starts = np.concatenate([[0], np.cumsum(lens)])
            for j, i in enumerate(owners):
                results[i][k] = data[starts[j]:starts[j + 1]]
        else:
            vals = arrays[f'{k}.val']
            for j, i in enumerate(owners):
                results[i][k] = vals[j].item()
    return results


def save_chunk(path: str, results: List[dict], tmp_prefix: str = '.tmp_') -> None:
    """Write a chunk atomically (its temporary file's name starts with ``tmp_prefix``)."""
    with atomic_open(path, 'wb', tmp_prefix=tmp_prefix) as f:
        np.savez(f, **encode_results(results))


def load_chunk(path: str) -> List[dict]:
    """Read a chunk written by :func:`save_chunk`."""
    with np.load(path, allow_pickle=False) as z:
        return decode_results({name: z[name] for name in z.files})


def json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)
