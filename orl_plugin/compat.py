"""Fixes for known breakages of the verified stack (torch 2.14, mmengine 0.10.7).

Imported first by ``orl_plugin/__init__.py``, so every user of the plugin (our tools,
``mim train``, mmpretrain's/mmdet's own ``tools/train.py`` through ``custom_imports``)
gets them. Every patch is idempotent and can be re-applied with :func:`apply_patches`.

1. **Resume under ``weights_only=True``.** torch >= 2.6 loads checkpoints with
   ``weights_only=True`` and mmengine's resume refuses its own checkpoints, because
   ``MessageHub.state_dict()`` holds ``HistoryBuffer`` objects whose pickles carry
   code references (the class, and its statistics methods written as
   ``builtins.getattr(HistoryBuffer, 'min')``). Allow-listing ``getattr`` would let any
   checkpoint call any attribute of any allowed object, so instead the message hub now
   *saves plain data*: each ``HistoryBuffer`` becomes ``{'type': 'HistoryBuffer',
   'log_history': ndarray, 'count_history': ndarray, 'max_length': int}`` and
   ``MessageHub.load_state_dict`` turns such dicts back into buffers (statistics
   methods are class-level, re-registered by importing code, so nothing is lost).
   The numpy pieces a message hub or ``meta`` may hold (arrays, scalars, dtypes) are
   allow-listed with ``torch.serialization.add_safe_globals``: they rebuild data, never
   call user code. Nothing switches ``weights_only`` off: ``load_from``, ``init_cfg``
   ``Pretrained`` and converters keep torch's default ``weights_only=True`` and still
   refuse checkpoints that pickle arbitrary objects. An unpatched mmengine reading our
   checkpoints skips the dict entries with a warning (it resumes everything else).
   Checkpoints written *without* this patch still fail to resume: they contain code
   references, which is exactly what the check is for.
2. **``collate_fn`` with ``_scope_``.** Configs inheriting ``mmpretrain::``/``mmdet::``
   bases carry ``collate_fn=dict(type='default_collate', _scope_='mmpretrain')``;
   ``Runner.build_dataloader`` passes ``_scope_`` on as a keyword argument. The patched
   builder resolves ``type`` in that scope's ``FUNCTIONS`` registry (mmpretrain and mmdet
   have none, so mmengine's, the fallback mmengine's own builders use) and drops the key.
3. **``persistent_workers`` with ``num_workers=0``.** torch's ``DataLoader`` raises for
   this combination (mmpretrain's dataset bases set ``persistent_workers=True``); the
   patched builder drops ``persistent_workers`` when there are no workers.
4. **CPU-only multi-process runs** (``torchrun ... --launcher pytorch`` with
   ``env_cfg=dict(dist_cfg=dict(backend='gloo'))``). mmengine's ``_init_dist_pytorch``
   calls ``torch.cuda.set_device`` unconditionally (raises without a GPU), and the
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
"""
import functools
import logging
from collections import OrderedDict
from typing import Any, Callable, Dict, List

import cv2
import mmcv
import mmcv.image
import mmcv.image.photometric as mmcv_photometric
import mmengine.dist.utils as mmengine_dist_utils
import numpy as np
import torch
from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
from mmengine.logging import HistoryBuffer, MessageHub, print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import FUNCTIONS
from mmengine.runner import FlexibleRunner, Runner
from PIL import Image

__all__ = ['apply_patches', 'numpy_safe_globals']

_PATCH_FLAG = '_orl_compat_patched'
_BUFFER_TYPE = 'HistoryBuffer'


# --------------------------------------------------------------------------------------
# 1. message hub state as plain data; numpy data allow-listed for weights_only loads
# --------------------------------------------------------------------------------------
def _buffer_to_data(buffer: HistoryBuffer) -> Dict[str, Any]:
    log_history, count_history = buffer.data
    return dict(type=_BUFFER_TYPE, log_history=np.array(log_history),
                count_history=np.array(count_history), max_length=int(buffer.max_length))


def _is_buffer_data(value: Any) -> bool:
    return (isinstance(value, dict) and value.get('type') == _BUFFER_TYPE
            and 'log_history' in value and 'count_history' in value)


def _data_to_buffer(value: Dict[str, Any]) -> HistoryBuffer:
    return HistoryBuffer(value['log_history'], value['count_history'],
                         value.get('max_length', 1000000))


def _patch_message_hub() -> None:
    orig_state_dict = MessageHub.state_dict
    orig_load_state_dict = MessageHub.load_state_dict
    if getattr(orig_state_dict, _PATCH_FLAG, False):
        return

    @functools.wraps(orig_state_dict)
    def state_dict(self: MessageHub) -> dict:
        state = orig_state_dict(self)
        state['log_scalars'] = OrderedDict(
            (key, _buffer_to_data(value) if isinstance(value, HistoryBuffer) else value)
            for key, value in state['log_scalars'].items())
        return state

    @functools.wraps(orig_load_state_dict)
    def load_state_dict(self: MessageHub, state_dict: Any) -> None:
        if isinstance(state_dict, dict) and isinstance(state_dict.get('log_scalars'), dict):
            scalars = OrderedDict(
                (key, _data_to_buffer(value) if _is_buffer_data(value) else value)
                for key, value in state_dict['log_scalars'].items())
            state_dict = dict(state_dict, log_scalars=scalars)
        return orig_load_state_dict(self, state_dict)

    setattr(state_dict, _PATCH_FLAG, True)
    setattr(load_state_dict, _PATCH_FLAG, True)
    MessageHub.state_dict = state_dict
    MessageHub.load_state_dict = load_state_dict


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
        safe += [getattr(dtypes, name) for name in dtypes.__all__
                 if isinstance(getattr(dtypes, name), type)]
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
        print_log('num_workers=0: dropping persistent_workers=True from the dataloader '
                  'config (torch refuses the combination)', logger='current',
                  level=logging.DEBUG)
    return fixed


def _patch_build_dataloader(runner_cls: type) -> None:
    orig: Callable = runner_cls.__dict__['build_dataloader'].__func__
    if getattr(orig, _PATCH_FLAG, False):
        return

    @functools.wraps(orig)
    def build_dataloader(dataloader: Any, *args: Any, **kwargs: Any):
        return orig(_fix_dataloader_cfg(dataloader), *args, **kwargs)

    setattr(build_dataloader, _PATCH_FLAG, True)
    runner_cls.build_dataloader = staticmethod(build_dataloader)


# --------------------------------------------------------------------------------------
# 4. CPU-only distributed runs
# --------------------------------------------------------------------------------------
def _has_accelerator() -> bool:
    return (torch.cuda.is_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


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

    orig_ddp_init = MMDistributedDataParallel.__init__
    if not getattr(orig_ddp_init, _PATCH_FLAG, False):

        @functools.wraps(orig_ddp_init)
        def __init__(self, module: torch.nn.Module, detect_anomalous_params: bool = False,
                     **kwargs) -> None:
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
    _allow_numpy_data()
    for runner_cls in (Runner, FlexibleRunner):
        _patch_build_dataloader(runner_cls)
    _patch_cpu_distributed()
    _patch_adjust_hue()


apply_patches()
