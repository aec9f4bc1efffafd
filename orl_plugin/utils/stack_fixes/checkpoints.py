"""Checkpoints as plain data, so that ``torch.load(weights_only=True)`` loads them in any process.

mmengine's checkpoints hold ``HistoryBuffer`` objects (pickled with code references) and numpy data, which
torch >= 2.6 refuses by default. Every checkpoint is written through :func:`to_plain` instead, and numpy's
data rebuilders are allow-listed for files written before that (docs/en/advanced_guides/stack_fixes.md).
"""
import functools
import logging
import sys
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MessageHub, print_log

from ._marker import is_patched, mark_patched

__all__ = ['numpy_safe_globals', 'portable_checkpoint', 'to_plain', 'patch_checkpoints']

_BUFFER_TYPE = 'HistoryBuffer'

# Types a vanilla ``torch.load(weights_only=True)`` rebuilds without an allow-list (torch.Size is
# a tuple subclass that torch allows too).
_PLAIN_TYPES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size)


def _history_tensor(values: np.ndarray) -> Any:
    """A HistoryBuffer array as a tensor of the same dtype (exact), or a list if torch has none."""
    try:
        return torch.from_numpy(np.array(values, copy=True))
    except TypeError:  # object / string arrays: no tensor dtype
        return np.asarray(values).tolist()


def _buffer_to_data(buffer: HistoryBuffer) -> Dict[str, Any]:
    log_history, count_history = buffer.data
    return dict(
        type=_BUFFER_TYPE,
        log_history=_history_tensor(log_history),
        count_history=_history_tensor(count_history),
        max_length=int(buffer.max_length))


def _is_buffer_data(value: Any) -> bool:
    return (isinstance(value, dict) and value.get('type') == _BUFFER_TYPE and 'log_history' in value
            and 'count_history' in value)


def _history_array(values: Any) -> np.ndarray:
    # tensors (this format), numpy arrays (checkpoints of orl_plugin <= 0.1.0) or lists
    return values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _data_to_buffer(value: Dict[str, Any]) -> HistoryBuffer:
    return HistoryBuffer(
        _history_array(value['log_history']), _history_array(value['count_history']), value.get('max_length', 1000000))


def to_plain(value: Any, where: str = 'checkpoint', unknown: Optional[List[str]] = None) -> Any:
    """``value`` rebuilt from types a plain ``torch.load(weights_only=True)`` accepts.

    Tensors and Python scalars are kept; numpy scalars become Python scalars, numpy arrays
    lists, dtypes strings, ``HistoryBuffer`` objects ``{'type': 'HistoryBuffer', ...}``
    dicts holding tensors (exact, see :func:`_data_to_buffer`), and dict/list/tuple
    subclasses (``ConfigDict``, ``defaultdict``, named tuples) their base type
    (``OrderedDict`` is kept). Anything else is kept as it is and its dotted path appended
    to ``unknown``.
    """
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist(), where, unknown)
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, HistoryBuffer):
        return _buffer_to_data(value)
    if isinstance(value, dict):
        items = [(to_plain(key, f'{where} key', unknown), to_plain(item, f'{where}.{key}', unknown))
                 for key, item in value.items()]
        if type(value) in (dict, OrderedDict) and \
                all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items())):
            return value  # nothing to change: keep it (and a state_dict's `_metadata`)
        out = OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
        if isinstance(out, OrderedDict) and hasattr(value, '_metadata'):
            out._metadata = value._metadata  # module versions read by load_state_dict
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [to_plain(item, f'{where}[{i}]', unknown) for i, item in enumerate(value)]
        if type(value) in (list, tuple, set) and all(a is b for a, b in zip(items, value)):
            return value
        if isinstance(value, list):
            return items
        return tuple(items) if isinstance(value, tuple) else set(items)
    for base in (bool, int, float, str):  # enums and other scalar subclasses
        if isinstance(value, base):
            return base(value)
    if unknown is not None:
        unknown.append(f'{where} ({type(value).__module__}.{type(value).__qualname__})')
    return value


def portable_checkpoint(checkpoint: dict, filename: str = '<checkpoint>') -> dict:
    """The checkpoint as plain data (:func:`to_plain`); warns about what cannot be made plain."""
    unknown: List[str] = []
    plain = to_plain(checkpoint, 'checkpoint', unknown)
    if unknown:
        print_log(
            f'{filename}: {len(unknown)} value(s) are neither tensors nor plain Python '
            f'data, so a process without orl_plugin cannot load this file with '
            f'weights_only=True: {", ".join(unknown[:5])}',
            logger='current',
            level=logging.WARNING)
    return plain


def _patch_message_hub() -> None:
    orig_state_dict = MessageHub.state_dict
    orig_load_state_dict = MessageHub.load_state_dict
    if is_patched(orig_state_dict):
        return

    @functools.wraps(orig_state_dict)
    def state_dict(self: MessageHub) -> dict:
        return to_plain(orig_state_dict(self), 'message_hub')

    @functools.wraps(orig_load_state_dict)
    def load_state_dict(self: MessageHub, state_dict: Any) -> None:
        if isinstance(state_dict, dict) and isinstance(state_dict.get('log_scalars'), dict):
            scalars = OrderedDict((key, _data_to_buffer(value) if _is_buffer_data(value) else value)
                                  for key, value in state_dict['log_scalars'].items())
            state_dict = dict(state_dict, log_scalars=scalars)
        return orig_load_state_dict(self, state_dict)

    MessageHub.state_dict = mark_patched(state_dict)
    MessageHub.load_state_dict = mark_patched(load_state_dict)


def _patch_save_checkpoint() -> None:
    orig = mmengine_checkpoint.save_checkpoint
    if is_patched(orig):
        return

    @functools.wraps(orig)
    def save_checkpoint(checkpoint: dict, filename: str, *args, **kwargs) -> None:
        return orig(portable_checkpoint(checkpoint, filename), filename, *args, **kwargs)

    mark_patched(save_checkpoint)
    # Runner.save_checkpoint uses the name bound in mmengine.runner.runner, CheckpointHook the
    # one of mmengine.runner, the strategies that of mmengine.runner.checkpoint (at call time)
    # or their own (deepspeed, colossalai: bound at import, so only if already imported).
    for name in ('mmengine.runner.checkpoint', 'mmengine.runner', 'mmengine.runner.runner',
                 'mmengine._strategy.deepspeed', 'mmengine._strategy.colossalai'):
        module = sys.modules.get(name)
        if module is not None and getattr(module, 'save_checkpoint', None) is orig:
            module.save_checkpoint = save_checkpoint


def numpy_safe_globals() -> List[Any]:
    """numpy callables that only rebuild arrays, scalars and dtypes from their bytes."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe: List[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy 1.x wrote `numpy.core.multiarray.*`; numpy 2 still unpickles those names.
    safe += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
             (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    # Unpickling a dtype sets its state, which needs its concrete class (Float64DType...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, name) for name in dtypes.__all__ if isinstance(getattr(dtypes, name), type)]
    return safe


def _allow_numpy_data() -> None:
    # torch keeps user-allowed globals in a set: adding them again is a no-op.
    torch.serialization.add_safe_globals(numpy_safe_globals())


def patch_checkpoints() -> None:
    """Write every checkpoint as plain data; let numpy data of older checkpoints load."""
    _patch_message_hub()
    _patch_save_checkpoint()
    _allow_numpy_data()
