"""Fixes for known breakages of the verified stack (torch 2.14, mmengine 0.10.7).

Imported first by ``orl_plugin/__init__.py``, so every user of the plugin (our tools,
``mim train``, mmpretrain's/mmdet's own ``tools/train.py`` through ``custom_imports``)
gets them. Every patch is idempotent and can be re-applied with :func:`apply_patches`.

1. **Checkpoints that load anywhere.** torch >= 2.6 loads with ``weights_only=True``, and
   mmengine's checkpoints hold what that refuses: ``HistoryBuffer`` objects in the message
   hub (pickled with code references: the class, and its statistics methods written as
   ``builtins.getattr(HistoryBuffer, 'min')``) and numpy arrays and scalars. So
   resume fails, and in a process that never imported the plugin (plain mmdet/mmpretrain,
   ``torch.load``) so does every load. Allow-listing ``getattr`` would let any checkpoint
   call any attribute of any allowed object, so instead every checkpoint is *written as plain
   data*: ``save_checkpoint`` (the runner's, the strategies', ``CheckpointHook``'s) passes it
   through :func:`to_plain`, under which each ``HistoryBuffer`` becomes
   ``{'type': 'HistoryBuffer', 'log_history': Tensor, 'count_history': Tensor,
   'max_length': int}`` (same dtype, so logged scalars come back exactly), numpy scalars
   Python scalars and numpy arrays lists. ``MessageHub.load_state_dict`` turns the buffer
   dicts back into buffers (statistics methods are class-level, re-registered by importing
   code). Checkpoints written by orl_plugin 0.1.0 (buffer dicts of numpy arrays) still load
   and resume in a process that imported the plugin: numpy's array/scalar/dtype rebuilders
   are allow-listed with ``torch.serialization.add_safe_globals`` (they rebuild data, never
   call user code). Nothing switches ``weights_only`` off: ``load_from``, ``init_cfg``
   ``Pretrained`` and converters keep torch's default ``weights_only=True`` and still
   refuse checkpoints that pickle arbitrary objects. An unpatched mmengine resuming our
   checkpoints skips the buffer dicts with a warning (it resumes everything else).
   Checkpoints written *without* the plugin still fail to resume: they contain code
   references, which is exactly what the check is for.
2. **``collate_fn`` with ``_scope_``.** Configs inheriting ``mmpretrain::``/``mmdet::``
   bases carry ``collate_fn=dict(type='default_collate', _scope_='mmpretrain')``;
   ``Runner.build_dataloader`` passes ``_scope_`` on as a keyword argument. The patched
   builder resolves ``type`` in that scope's ``FUNCTIONS`` registry (mmpretrain and mmdet
   have none, so mmengine's, the fallback mmengine's own builders use) and drops the key.
3. **``persistent_workers`` with ``num_workers=0``.** torch's ``DataLoader`` raises for
   this combination (mmpretrain's dataset bases set ``persistent_workers=True``); the
   patched builder drops ``persistent_workers`` when there are no workers.
4. **CPU-only multi-process runs** (``torchrun ... --launcher pytorch`` or ``srun ...
   --launcher slurm`` with ``env_cfg=dict(dist_cfg=dict(backend='gloo'))``). mmengine's
   ``_init_dist_pytorch`` and ``_init_dist_slurm`` call ``torch.cuda.set_device``
   unconditionally (raises without a GPU), and the
   runner wraps the model in ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``,
   which torch refuses for a CPU module. With no accelerator the process group is
   initialised without pinning a device, and ``device_ids``/``output_device`` are
   dropped when the wrapped module lives on the CPU (the only call torch accepts).
   GPU, NPU, MLU and MUSA machines take mmengine's original code paths unchanged.
5. **Negative hue shifts under numpy 2.** ``mmcv.adjust_hue`` (used by mmpretrain's
   ``ColorJitter``, so by every BYOL/ORL view pipeline) shifts the hue channel with
   ``h += np.uint8(hue_factor * 255)``; numpy 2 raises ``OverflowError`` for a negative
   ``hue_factor`` instead of wrapping: about 4 in 10 views of the BYOL recipe crash. The
   replacement does the modular shift mmcv intends (``int(hue_factor * 255) mod 256``,
   identical results for ``hue_factor >= 0``), for both the ``cv2`` and ``pillow``
   backends.
6. **A data set too small for one batch.** A data loader with ``drop_last=True`` (every
   pre-training config: a last batch of one image per rank crashes a BatchNorm1d neck)
   makes no batch when a rank gets fewer images than its batch, and mmengine stops with an
   ``AssertionError`` about ``epoch_length`` inside the scheduler. The patched builder
   stops first, with one line that says how many images that batch size and number of
   ranks need (:class:`NoBatchError`).
"""
import functools
import logging
import os
import subprocess
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

import cv2
import mmcv
import mmcv.image
import mmcv.image.photometric as mmcv_photometric
import mmengine.dist.utils as mmengine_dist_utils
import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.dataset import InfiniteSampler
from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, MessageHub, print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import FUNCTIONS
from mmengine.runner import FlexibleRunner, Runner
from PIL import Image
from torch.utils.data import DataLoader

__all__ = [
    'NoBatchError', 'apply_patches', 'check_makes_a_batch', 'numpy_safe_globals', 'portable_checkpoint', 'to_plain'
]

_PATCH_FLAG = '_orl_compat_patched'
_BUFFER_TYPE = 'HistoryBuffer'

# --------------------------------------------------------------------------------------
# 1. checkpoints as plain data; numpy data allow-listed for files written before that
# --------------------------------------------------------------------------------------
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
    if getattr(orig_state_dict, _PATCH_FLAG, False):
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

    setattr(state_dict, _PATCH_FLAG, True)
    setattr(load_state_dict, _PATCH_FLAG, True)
    MessageHub.state_dict = state_dict
    MessageHub.load_state_dict = load_state_dict


def _patch_save_checkpoint() -> None:
    orig = mmengine_checkpoint.save_checkpoint
    if getattr(orig, _PATCH_FLAG, False):
        return

    @functools.wraps(orig)
    def save_checkpoint(checkpoint: dict, filename: str, *args, **kwargs) -> None:
        return orig(portable_checkpoint(checkpoint, filename), filename, *args, **kwargs)

    setattr(save_checkpoint, _PATCH_FLAG, True)
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


# --------------------------------------------------------------------------------------
# 2 + 3. data loader config: `_scope_` in collate_fn, persistent workers without workers
# --------------------------------------------------------------------------------------
def _fix_dataloader_cfg(dataloader: Any) -> Any:
    """Return a dataloader config torch/mmengine accept (configs are never mutated)."""
    if not isinstance(dataloader, dict):
        return dataloader  # an already built DataLoader
    collate_cfg = dataloader.get('collate_fn')
    scoped_collate = isinstance(collate_cfg, dict) and '_scope_' in collate_cfg
    idle_persistent = bool(dataloader.get('persistent_workers')) and \
        not dataloader.get('num_workers', 0)
    if not (scoped_collate or idle_persistent):
        return dataloader

    fixed = dict(dataloader)
    if scoped_collate:
        collate_cfg = dict(collate_cfg)
        scope = collate_cfg.pop('_scope_')
        collate_type = collate_cfg.get('type')
        if isinstance(collate_type, str):
            # The scope's own FUNCTIONS registry if it has one (mmpretrain and mmdet have
            # none), else mmengine's: the fallback mmengine's builders use for `_scope_`.
            collate_fn = FUNCTIONS.get(f'{scope}.{collate_type}') if scope else None
            if collate_fn is None:
                collate_fn = FUNCTIONS.get(collate_type)
            if collate_fn is None:
                raise KeyError(f'collate_fn type {collate_type!r} is not registered in '
                               f'the FUNCTIONS registry of scope {scope!r}')
            collate_cfg['type'] = collate_fn
        fixed['collate_fn'] = collate_cfg
    if idle_persistent:
        # torch refuses persistent workers when there are none; there is nothing to keep.
        fixed.pop('persistent_workers')
        print_log(
            'num_workers=0: dropping persistent_workers=True from the dataloader '
            'config (torch refuses the combination)',
            logger='current',
            level=logging.DEBUG)
    return fixed


def _patch_build_dataloader(runner_cls: type) -> None:
    orig: Callable = runner_cls.__dict__['build_dataloader'].__func__
    if getattr(orig, _PATCH_FLAG, False):
        return

    @functools.wraps(orig)
    def build_dataloader(dataloader: Any, *args: Any, **kwargs: Any):
        loader = orig(_fix_dataloader_cfg(dataloader), *args, **kwargs)
        check_makes_a_batch(loader)
        return loader

    setattr(build_dataloader, _PATCH_FLAG, True)
    runner_cls.build_dataloader = staticmethod(build_dataloader)


# --------------------------------------------------------------------------------------
# 6. a data set too small for one batch per rank
# --------------------------------------------------------------------------------------
class NoBatchError(ValueError):
    """A data loader that drops its last partial batch gets fewer images per rank than one batch."""


def check_makes_a_batch(loader: Any) -> None:
    """Raise :class:`NoBatchError` when ``loader`` (``drop_last=True``) makes no batch on this rank."""
    if not isinstance(loader, DataLoader) or not loader.drop_last or not loader.batch_size or \
            isinstance(loader.sampler, InfiniteSampler):  # an endless sampler always fills its batches
        return
    try:
        if len(loader) > 0:
            return
        num_images = len(loader.dataset)
    except TypeError:  # an iterable data set has no length
        return
    _, world_size = get_dist_info()
    batch = loader.batch_size
    # DefaultSampler(round_up=True) gives every rank ceil(n / world_size) indices; without it the
    # last rank gets the fewest.
    need = world_size * (batch - 1) + 1 if getattr(loader.sampler, 'round_up', False) else world_size * batch
    training = not getattr(loader.dataset, 'test_mode', False)
    key = 'train_dataloader.batch_size' if training else 'the data loader\'s batch_size'
    ranks = f'{world_size} rank{"s" if world_size > 1 else ""}'
    raise NoBatchError(f'{type(loader.dataset).__name__}: {num_images} {"training " if training else ""}images '
                       f'make no batch of {batch} per rank ({key}={batch} on {ranks}, drop_last=True): it needs at '
                       f'least {need} images; add images or lower {key}')


# --------------------------------------------------------------------------------------
# 4. CPU-only distributed runs
# --------------------------------------------------------------------------------------
def _has_accelerator() -> bool:
    return (torch.cuda.is_available() or is_npu_available() or is_mlu_available() or is_musa_available())


def _patch_cpu_distributed() -> None:
    orig_init_dist = mmengine_dist_utils._init_dist_pytorch
    if not getattr(orig_init_dist, _PATCH_FLAG, False):

        @functools.wraps(orig_init_dist)
        def _init_dist_pytorch(backend: str, init_backend: str = 'torch', **kwargs) -> None:
            if _has_accelerator() or init_backend != 'torch':
                return orig_init_dist(backend, init_backend=init_backend, **kwargs)
            # No device to pin: torch.cuda.set_device would raise on this machine.
            torch.distributed.init_process_group(backend=backend, **kwargs)

        setattr(_init_dist_pytorch, _PATCH_FLAG, True)
        # init_dist looks the function up in its module at call time.
        mmengine_dist_utils._init_dist_pytorch = _init_dist_pytorch

    orig_init_slurm = mmengine_dist_utils._init_dist_slurm
    if not getattr(orig_init_slurm, _PATCH_FLAG, False):

        @functools.wraps(orig_init_slurm)
        def _init_dist_slurm(backend: str, port: Optional[int] = None, init_backend: str = 'torch', **kwargs) -> None:
            if _has_accelerator() or init_backend != 'torch':
                return orig_init_slurm(backend, port=port, init_backend=init_backend, **kwargs)
            # mmengine's environment from srun's variables, without pinning a device.
            if 'MASTER_ADDR' not in os.environ:
                node_list = os.environ['SLURM_NODELIST']
                os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
            if port is not None:
                os.environ['MASTER_PORT'] = str(port)
            os.environ.setdefault('MASTER_PORT', '29500')
            os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
            os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
            os.environ['RANK'] = os.environ['SLURM_PROCID']
            torch.distributed.init_process_group(backend=backend, **kwargs)

        setattr(_init_dist_slurm, _PATCH_FLAG, True)
        mmengine_dist_utils._init_dist_slurm = _init_dist_slurm

    orig_ddp_init = MMDistributedDataParallel.__init__
    if not getattr(orig_ddp_init, _PATCH_FLAG, False):

        @functools.wraps(orig_ddp_init)
        def __init__(self, module: torch.nn.Module, detect_anomalous_params: bool = False, **kwargs) -> None:
            params = list(module.parameters())
            if kwargs.get('device_ids') and params and \
                    all(p.device.type == 'cpu' for p in params):
                # torch's DDP accepts device_ids only for single-device GPU modules.
                kwargs['device_ids'] = None
                kwargs.pop('output_device', None)
            orig_ddp_init(self, module, detect_anomalous_params, **kwargs)

        setattr(__init__, _PATCH_FLAG, True)
        MMDistributedDataParallel.__init__ = __init__


# --------------------------------------------------------------------------------------
# 5. mmcv.adjust_hue with numpy 2
# --------------------------------------------------------------------------------------
def _shift_hue(hue: np.ndarray, hue_factor: float) -> np.ndarray:
    """Rotate a uint8 hue channel by ``hue_factor`` of a full turn (255 = one turn)."""
    shift = int(hue_factor * 255) % 256  # truncation as numpy 1's cast did, then wrap
    return ((hue.astype(np.int16) + shift) % 256).astype(np.uint8)


def _patch_adjust_hue() -> None:
    orig = mmcv_photometric.adjust_hue
    if getattr(orig, _PATCH_FLAG, False):
        return

    @functools.wraps(orig)
    def adjust_hue(img: np.ndarray, hue_factor: float, backend: str = None) -> np.ndarray:
        if backend is None:
            backend = mmcv_photometric.imread_backend
        if backend not in ['cv2', 'pillow']:
            raise ValueError(f'backend: {backend} is not supported.'
                             f"Supported backends are 'cv2', 'pillow'")
        if not (-0.5 <= hue_factor <= 0.5):
            raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
        if not (isinstance(img, np.ndarray) and (img.ndim in {2, 3})):
            raise TypeError('img should be ndarray with dim=[2 or 3].')
        if backend == 'pillow':
            assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
            pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
            h, s, v = pil_image.convert('HSV').split()
            h = Image.fromarray(_shift_hue(np.array(h, dtype=np.uint8), hue_factor), 'L')
            pil_image = Image.merge('HSV', (h, s, v)).convert('RGB')
            return np.array(pil_image, dtype=img.dtype)[..., ::-1]
        dtype = img.dtype
        hsv_img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
        h, s, v = cv2.split(hsv_img)
        hsv_img = cv2.merge([_shift_hue(h, hue_factor), s, v])
        return cv2.cvtColor(hsv_img, cv2.COLOR_HSV2BGR_FULL).astype(dtype)

    setattr(adjust_hue, _PATCH_FLAG, True)
    # mmpretrain calls `mmcv.adjust_hue`; the other two names are where users import it.
    for namespace in (mmcv_photometric, mmcv.image, mmcv):
        namespace.adjust_hue = adjust_hue


def apply_patches() -> None:
    """Apply every fix of this module (idempotent; called when ``orl_plugin`` is imported)."""
    _patch_message_hub()
    _patch_save_checkpoint()
    _allow_numpy_data()
    for runner_cls in (Runner, FlexibleRunner):
        _patch_build_dataloader(runner_cls)
    _patch_cpu_distributed()
    _patch_adjust_hue()


apply_patches()
