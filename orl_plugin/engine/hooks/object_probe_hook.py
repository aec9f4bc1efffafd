"""A training hook that shows whether self-supervised features are learning: the object kNN probe."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Union

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS
from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.evaluation.object_probe import object_crops, object_knn_probe


@HOOKS.register_module()
class ObjectProbeHook(Hook):
    """Run the object-level kNN probe (:mod:`orl_plugin.evaluation.object_probe`) before
    training and every ``interval`` epochs, and log ``probe/object_knn_top1`` (with the value
    at the start, ``probe/object_knn_top1_init``, and ``probe/object_knn_chance``, the share of
    the most common query class).

    Crops of the annotated objects of ``reference`` (e.g. the train split) are the kNN memory;
    those of ``query`` (the held-out split) are classified. Both are
    :class:`SceneImageDataset` configs (their pipelines are not used); the crops are cut once.
    The probe runs on the main process only (eval-mode forwards, no collective ops). It is an
    aid, not part of the method: when a split has no annotated objects or cannot be read, it
    logs a warning naming the file and turns itself off instead of stopping the training.

    Args:
        reference: Dataset config of the reference crops.
        query: Dataset config of the query crops.
        interval: Probe every ``interval`` epochs (and after the last one).
        crop_size: Crop side in px (the model sees it as one RoI).
        k: Neighbours that vote.
        temperature: Vote weight ``exp(sim / temperature)``.
        max_objects: Cap on the crops of each split (0: all).
    """

    priority = 'LOW'

    def __init__(self,
                 reference: Dict[str, Any],
                 query: Dict[str, Any],
                 interval: int = 5,
                 crop_size: int = 64,
                 k: int = 20,
                 temperature: float = 0.07,
                 max_objects: int = 0) -> None:
        if interval < 1:
            raise ValueError(f'ObjectProbeHook: interval must be >= 1, got {interval}')
        self.reference_cfg = reference
        self.query_cfg = query
        self.interval = interval
        self.crop_size = crop_size
        self.k = k
        self.temperature = temperature
        self.max_objects = max_objects
        self._crops: Optional[tuple] = None
        self._init_top1: Optional[float] = None
        self.disabled_reason: Optional[str] = None

    def _load(self, cfg: Union[Dict[str, Any], Any]) -> tuple:
        crops = object_crops(scene_data_infos(cfg), self.crop_size, max_objects=self.max_objects)
        if len(crops[0]) == 0:
            raise ValueError(f'ObjectProbeHook: no annotated objects in {cfg.get("ann_file")!r} '
                             f'(data_root {cfg.get("data_root")!r}); the probe needs a COCO JSON with boxes')
        return crops

    def _probe(self, runner: Any, tag: str) -> None:
        if not is_main_process() or self.disabled_reason is not None:
            return
        t0 = time.time()
        if self._crops is None:
            try:
                self._crops = (self._load(self.reference_cfg), self._load(self.query_cfg))
            except (OSError, ValueError, KeyError) as e:
                self.disabled_reason = f'{type(e).__name__}: {e}'
                runner.logger.warning(f'object probe turned off: {self.disabled_reason}')
                return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        res = object_knn_probe(model, *self._crops, k=self.k, temperature=self.temperature)
        if self._init_top1 is None:
            self._init_top1 = res['top1']
        scalars = {'probe/object_knn_top1': res['top1'], 'probe/object_knn_top1_init': self._init_top1,
                   'probe/object_knn_chance': res['chance']}
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        if res['num_nonfinite']:
            runner.logger.warning(
                f'object probe ({tag}): {res["num_nonfinite"]} of {res["num_reference"] + res["num_query"]} '
                'crop features are NaN/inf: the network has diverged or its BN statistics are broken, '
                'so this score means nothing')
        runner.logger.info(
            f'object probe ({tag}): kNN top-1 {res["top1"]:.4f} on {res["num_query"]} held-out objects '
            f'(at start {self._init_top1:.4f}, most common class {res["chance"]:.4f}; '
            f'{res["num_reference"]} reference crops, {time.time() - t0:.1f} s)')

    def before_train(self, runner: Any) -> None:
        """The baseline: the features the run starts from (random init or the loaded weights)."""
        if runner.epoch == 0:
            self._probe(runner, 'before training')

    def after_train_epoch(self, runner: Any) -> None:
        if self.every_n_epochs(runner, self.interval) or self.is_last_train_epoch(runner):
            self._probe(runner, f'epoch {runner.epoch + 1}')  # the loop counts the epoch after the hooks
