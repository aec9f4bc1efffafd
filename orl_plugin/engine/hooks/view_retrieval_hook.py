"""A training hook that shows whether stage 1 is learning its own task on unseen images."""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS
from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.evaluation.view_retrieval import make_view_pairs, view_retrieval


def training_view_pipelines(cfg: Any) -> Optional[List[list]]:
    """The two view pipelines of a config's training ``MultiView`` transform (``None`` without one)."""
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    for ds in (dataset, dataset.get('dataset', {})):  # plain, or wrapped once (RepeatDataset & co.)
        for t in ds.get('pipeline', []) or []:
            if t.get('type') == 'MultiView':
                transforms = list(t['transforms'])
                if len(transforms) == 1:  # MultiView(num_views=[2], transforms=[pipeline])
                    transforms = transforms * 2
                return transforms[:2]
    return None


@HOOKS.register_module()
class ViewRetrievalHook(Hook):
    """Score held-out view retrieval (:mod:`orl_plugin.evaluation.view_retrieval`) before
    training and every ``interval`` epochs, and log ``probe/view_top1`` (with
    ``probe/view_top1_init``, the value at the start, and ``probe/view_chance``, ``1 / N``) and
    ``probe/view_rank``, the effective rank of the view features (with ``probe/view_rank_init``):
    a rank falling towards 1 is dimensional collapse.

    Two views of each of the first ``max_images`` images of ``dataset`` (a held-out split;
    its own pipeline is not used) are cut once, with a fixed seed, by ``view_pipelines`` (by
    default the two ``MultiView`` pipelines of the training data set), so every score of a run
    is taken on the same views. Main process only; when the views cannot be made it logs a
    warning naming the reason and turns itself off instead of stopping the training.

    Args:
        dataset: Dataset config of the held-out images (any scene data set; no labels needed).
        view_pipelines: Two transform lists; ``None`` reads them from ``train_dataloader``.
        interval: Score every ``interval`` epochs (and after the last one).
        max_images: Images to use (the first ones of ``dataset``).
        seed: Seed of the views.
    """

    priority = 'LOW'

    def __init__(self,
                 dataset: Dict[str, Any],
                 view_pipelines: Optional[Sequence[Sequence[dict]]] = None,
                 interval: int = 5,
                 max_images: int = 256,
                 seed: int = 0) -> None:
        if interval < 1:
            raise ValueError(f'ViewRetrievalHook: interval must be >= 1, got {interval}')
        if max_images < 2:
            raise ValueError(f'ViewRetrievalHook: max_images must be >= 2, got {max_images}')
        self.dataset_cfg = dataset
        self.view_pipelines = view_pipelines
        self.interval = interval
        self.max_images = max_images
        self.seed = seed
        self._views: Optional[tuple] = None
        self._init: Optional[Dict[str, float]] = None
        self.disabled_reason: Optional[str] = None

    def _make_views(self, runner: Any) -> tuple:
        pipelines = self.view_pipelines or training_view_pipelines(runner.cfg)
        if not pipelines:
            raise ValueError('no view_pipelines given and the training data set has no MultiView transform')
        cfg = self.dataset_cfg
        paths = [info['img_path'] for info in scene_data_infos(cfg, limit=self.max_images)]
        if len(paths) < 2:
            raise ValueError(f'ViewRetrievalHook: {cfg.get("ann_file") or cfg.get("data_root")!r} has '
                             f'{len(paths)} image(s); view retrieval needs at least 2')
        return make_view_pairs(paths, pipelines, seed=self.seed)

    def _score(self, runner: Any, tag: str) -> None:
        if not is_main_process() or self.disabled_reason is not None:
            return
        t0 = time.time()
        if self._views is None:
            try:
                self._views = self._make_views(runner)
            except (OSError, ValueError, KeyError) as e:
                self.disabled_reason = f'{type(e).__name__}: {e}'
                runner.logger.warning(f'view retrieval turned off: {self.disabled_reason}')
                return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        res = view_retrieval(model, self._views)
        if self._init is None:
            self._init = dict(top1=res['top1'], rank=res['rank'])
        runner.visualizer.add_scalars(
            {'probe/view_top1': res['top1'], 'probe/view_top1_init': self._init['top1'],
             'probe/view_chance': res['chance'], 'probe/view_rank': res['rank'],
             'probe/view_rank_init': self._init['rank']}, step=runner.iter)
        if res['num_nonfinite']:
            runner.logger.warning(
                f'view retrieval ({tag}): {res["num_nonfinite"]} of {2 * res["num_images"]} view features are '
                'NaN/inf: the network has diverged or its BN statistics are broken, so these scores mean nothing')
        runner.logger.info(
            f'view retrieval ({tag}): top-1 {res["top1"]:.4f} on {res["num_images"]} held-out images '
            f'(at start {self._init["top1"]:.4f}, chance {res["chance"]:.4f}); feature rank '
            f'{res["rank"]:.1f} (at start {self._init["rank"]:.1f}; {time.time() - t0:.1f} s)')

    def before_train(self, runner: Any) -> None:
        """The baseline: the features the run starts from."""
        if runner.epoch == 0:
            self._score(runner, 'before training')

    def after_train_epoch(self, runner: Any) -> None:
        if self.every_n_epochs(runner, self.interval) or self.is_last_train_epoch(runner):
            self._score(runner, f'epoch {runner.epoch + 1}')
