"""A training hook that shows whether self-supervised features are learning: the object kNN probe."""
from __future__ import annotations

from typing import Any, Dict, Tuple, Union

from mmpretrain.registry import HOOKS

from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.engine.hooks.held_out_probe_hook import HeldOutProbeHook
from orl_plugin.evaluation.object_probe import object_crops, object_knn_probe


@HOOKS.register_module()
class ObjectProbeHook(HeldOutProbeHook):
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

    title = 'object probe'
    feature_kind = 'crop'

    def __init__(self,
                 reference: Dict[str, Any],
                 query: Dict[str, Any],
                 interval: int = 5,
                 crop_size: int = 64,
                 k: int = 20,
                 temperature: float = 0.07,
                 max_objects: int = 0) -> None:
        super().__init__(interval)
        self.reference_cfg = reference
        self.query_cfg = query
        self.crop_size = crop_size
        self.k = k
        self.temperature = temperature
        self.max_objects = max_objects

    def _load(self, cfg: Union[Dict[str, Any], Any]) -> tuple:
        crops = object_crops(scene_data_infos(cfg), self.crop_size, max_objects=self.max_objects)
        if len(crops[0]) == 0:
            where = (f'{cfg.get("ann_file")!r} (data_root {cfg.get("data_root")!r})'
                     if cfg.get('ann_file') else f'the image folder {cfg.get("data_prefix")} (no annotation file)')
            raise ValueError(f'ObjectProbeHook: no annotated objects in {where}; the probe needs a COCO JSON '
                             'with boxes')
        return crops

    def prepare(self, runner: Any) -> tuple:
        """Crops and labels of both splits."""
        return self._load(self.reference_cfg), self._load(self.query_cfg)

    def measure(self, model: Any, data: tuple) -> Dict[str, Any]:
        return object_knn_probe(model, *data, k=self.k, temperature=self.temperature)

    def report(self, res: Dict[str, Any], init: Dict[str, Any]) -> Tuple[Dict[str, float], str, int]:
        scalars = {
            'probe/object_knn_top1': res['top1'], 'probe/object_knn_top1_init': init['top1'],
            'probe/object_knn_chance': res['chance']
        }
        text = (f'kNN top-1 {res["top1"]:.4f} on {res["num_query"]} held-out objects (at start {init["top1"]:.4f}, '
                f'most common class {res["chance"]:.4f}; {res["num_reference"]} reference crops)')
        return scalars, text, res['num_reference'] + res['num_query']
