"""A training hook that shows whether the backbone learns objects on real data: the kNN probe on the
ground-truth objects of one COCO-format annotation file (COCO val2017 by default)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from mmengine.dist import is_main_process
from mmengine.fileio import exists, join_path
from mmengine.utils import is_abs
from mmpretrain.registry import HOOKS

from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.engine.hooks.held_out_probe_hook import HeldOutProbeHook
from orl_plugin.evaluation.object_probe import class_balanced_crops, leave_one_image_out_probe

COCO_VAL2017 = dict(
    type='SceneImageDataset',
    data_root='data/coco/',
    ann_file='annotations/instances_val2017.json',
    data_prefix=dict(img_path='val2017/'),
    with_masks=False)


@HOOKS.register_module()
class CocoObjectProbeHook(HeldOutProbeHook):
    """kNN top-1 of the online backbone's pooled feature on the ground-truth objects of a
    COCO-format file, before training and every ``interval`` epochs (and after the last one),
    logged as ``probe/coco_object_knn_top1`` (with ``probe/coco_object_knn_top1_init``, the value
    at the start, and ``probe/coco_object_knn_chance``, the share of the most common class).

    At most ``max_per_class`` objects of each class with both sides >= ``min_side`` px are drawn
    once (fixed ``seed``) and cropped to ``crop_size`` px (the 2c crop); every crop is classified by
    a similarity-weighted vote of its ``k`` nearest crops of the *other* images
    (:func:`~orl_plugin.evaluation.object_probe.leave_one_image_out_probe`), so no split is needed
    and a crop's own scene never votes. Main process only (eval-mode forwards, no collective ops).

    It is an aid, not part of the method: when the annotation file is missing the hook says so in
    one line at the start of training and turns itself off; unreadable images are left out (one
    warning names them); a file without usable boxes turns it off with one line too.

    Args:
        dataset: ``SceneImageDataset`` config of the annotated images (its pipeline is not used).
            Defaults to COCO val2017 under ``data/coco/``.
        interval: Probe every ``interval`` epochs (and after the last one).
        max_per_class: Cap on the objects of each class (0: all of them).
        crop_size: Crop side in px.
        min_side: Smallest box side in px (COCO's small objects are under 32 x 32).
        k: Neighbours that vote.
        temperature: Vote weight ``exp(sim / temperature)``.
        seed: Seed of the drawn objects.
    """

    title = 'COCO object probe'
    feature_kind = 'crop'

    def __init__(self,
                 dataset: Optional[Dict[str, Any]] = None,
                 interval: int = 1,
                 max_per_class: int = 25,
                 crop_size: int = 96,
                 min_side: float = 32.0,
                 k: int = 20,
                 temperature: float = 0.07,
                 seed: int = 0) -> None:
        super().__init__(interval)
        if max_per_class < 0:
            raise ValueError(f'CocoObjectProbeHook: max_per_class must be >= 0, got {max_per_class}')
        self.dataset_cfg = dict(COCO_VAL2017 if dataset is None else dataset)
        self.max_per_class = max_per_class
        self.crop_size = crop_size
        self.min_side = min_side
        self.k = k
        self.temperature = temperature
        self.seed = seed

    @property
    def ann_file(self) -> str:
        """The annotation file, joined to the data set's ``data_root`` as the data set does."""
        ann, root = str(self.dataset_cfg.get('ann_file', '')), self.dataset_cfg.get('data_root', '')
        return join_path(root, ann) if root and ann and not is_abs(ann) else ann

    def before_train(self, runner: Any) -> None:
        """Check the annotation file at the start, whatever epoch the run starts from."""
        if not self.ann_file or not exists(self.ann_file):
            what = 'no annotation file given' if not self.ann_file else f'no annotation file {self.ann_file}'
            self.disabled_reason = what
            if is_main_process():
                runner.logger.warning(f'{self.title} turned off: {what} (a COCO-format file with boxes); '
                                      'training goes on without it')
            return
        super().before_train(runner)

    def prepare(self, runner: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The crops, their classes and their images."""
        skipped: List[str] = []
        data = class_balanced_crops(
            scene_data_infos(self.dataset_cfg),
            self.max_per_class,
            self.crop_size,
            self.min_side,
            self.seed,
            skipped=skipped)
        if skipped:
            more = f'; and {len(skipped) - 20} more' if len(skipped) > 20 else ''
            runner.logger.warning(f'{self.title}: left out {len(skipped)} unreadable image(s): '
                                  f'{"; ".join(skipped[:20])}{more}')
        if len(np.unique(data[2])) < 2:
            raise ValueError(f'{self.ann_file} has {len(data[0])} object(s) with both sides >= {self.min_side:g} px '
                             f'in {len(np.unique(data[2]))} readable image(s); the probe needs objects in 2 images '
                             'or more')
        return data

    def measure(self, model: Any, data: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> Dict[str, Any]:
        return leave_one_image_out_probe(model, *data, k=self.k, temperature=self.temperature)

    def report(self, res: Dict[str, Any], init: Dict[str, Any]) -> Tuple[Dict[str, float], str, int]:
        scalars = {
            'probe/coco_object_knn_top1': res['top1'], 'probe/coco_object_knn_top1_init': init['top1'],
            'probe/coco_object_knn_chance': res['chance']
        }
        cap = f'up to {self.max_per_class} per class' if self.max_per_class else 'all'
        text = (f'kNN top-1 {res["top1"]:.4f} on {res["num_crops"]} objects of {res["num_classes"]} classes '
                f'({cap}; neighbours from the other images; at start {init["top1"]:.4f}, most common class '
                f'{res["chance"]:.4f})')
        return scalars, text, res['num_crops']
