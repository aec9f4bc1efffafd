"""One config switch for TensorBoard: ``tensorboard = True`` adds it to the run's visualisation backends."""
from __future__ import annotations

import importlib.util
import os.path as osp
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import VISBACKENDS
from mmpretrain.registry import HOOKS


class TensorboardMissingError(ImportError):
    """``tensorboard = True`` without the tensorboard package."""


@HOOKS.register_module()
class TensorboardSwitchHook(Hook):
    """Write every logged scalar (losses, learning rate, probes, the collapse monitor) to TensorBoard
    as well when the config has ``tensorboard = True`` (or ``--cfg-options tensorboard=True``).

    The event files go beside ``scalars.json``, under ``WORK_DIR/TIMESTAMP/vis_data/``
    (``tensorboard --logdir WORK_DIR``). Off, or with a TensorBoard backend already in the
    config's ``visualizer``, it does nothing. TensorBoard is optional: on with the package
    missing, the run stops before training with one line saying how to install it
    (``pip install tensorboard``).
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner: Any) -> None:
        if not runner.cfg.get('tensorboard', False):
            return
        if runner.visualizer.get_backend('TensorboardVisBackend') is not None:
            return
        if importlib.util.find_spec('tensorboard') is None:
            raise TensorboardMissingError('tensorboard=True needs the tensorboard package: pip install tensorboard '
                                          '(or pip install "orl-plugin[tensorboard]"), or set tensorboard=False')
        backend = VISBACKENDS.build(dict(type='TensorboardVisBackend', save_dir=osp.join(runner.log_dir, 'vis_data')))
        backend.add_config(runner.cfg)
        # mmengine's Visualizer builds its backends once, from the config; it has no method to add one later
        runner.visualizer._vis_backends['TensorboardVisBackend'] = backend
        runner.logger.info(f'TensorBoard: event files in {osp.join(runner.log_dir, "vis_data")}')
