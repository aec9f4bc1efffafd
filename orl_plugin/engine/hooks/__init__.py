"""Importing this package registers its components."""
from .coco_object_probe_hook import CocoObjectProbeHook  # noqa: F401
from .collapse_monitor_hook import CollapseMonitorHook  # noqa: F401
from .nan_guard_hook import NaNGuardHook, NonFiniteLossError  # noqa: F401
from .object_probe_hook import ObjectProbeHook  # noqa: F401
from .tensorboard_switch_hook import TensorboardSwitchHook  # noqa: F401
from .view_retrieval_hook import ViewRetrievalHook  # noqa: F401
