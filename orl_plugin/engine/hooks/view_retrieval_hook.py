"""A training hook that shows whether stage 1 is learning its own task on unseen images."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmpretrain.registry import HOOKS

from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.engine.hooks.held_out_probe_hook import HeldOutProbeHook
from orl_plugin.evaluation.view_retrieval import make_view_pairs, view_retrieval


def training_view_pipelines(cfg: Any) -> Optional[List[list]]:
    """The two view pipelines of a config's training ``MultiView`` or ``ImageViews`` transform (``None``
    without one)."""
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    for ds in (dataset, dataset.get('dataset', {})):  # plain, or wrapped once (RepeatDataset & co.)
        for t in ds.get('pipeline', []) or []:
            if t.get('type') == 'ImageViews':
                return list(t['pipelines'])[:2]
            if t.get('type') == 'MultiView':
                transforms = list(t['transforms'])
                if len(transforms) == 1:  # MultiView(num_views=[2], transforms=[pipeline])
                    transforms = transforms * 2
                return transforms[:2]
    return None


def training_image_list(cfg: Any) -> Optional[dict]:
    """The data set config of a config's training images (unwrapped once, pipeline left out)."""
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    dataset = dataset.get('dataset', dataset)  # RepeatDataset & co.
    return dict(dataset, pipeline=[]) if dataset else None


@HOOKS.register_module()
class ViewRetrievalHook(HeldOutProbeHook):
    """Score held-out view retrieval (:mod:`orl_plugin.evaluation.view_retrieval`) before
    training and every ``interval`` epochs, and log ``probe/view_top1`` (with
    ``probe/view_top1_init``, the value at the start, and ``probe/view_chance``, ``1 / N``) and
    ``probe/view_rank``, the effective rank of the view features (with ``probe/view_rank_init``):
    a rank falling towards 1 is dimensional collapse.

    Two views of each of the first ``max_images`` images of ``dataset`` (a held-out split;
    its own pipeline is not used) are cut once, with a fixed seed, by ``view_pipelines`` (by
    default the two ``MultiView`` pipelines of the training data set), so every score of a run
    is taken on the same views. Unreadable images are left out (one warning names them). Main
    process only; when the views cannot be made it logs a warning naming the reason and turns
    itself off instead of stopping the training.

    Without a held-out split (``dataset=None``, e.g. a folder of the user's photos) it takes the
    first ``max_images`` training images and says so in its log line: top-1 then measures the
    training task on images the network has seen, and the rank, the sign of collapse, needs no
    split at all.

    Args:
        dataset: Dataset config of the held-out images (any scene data set; no labels needed);
            ``None``: the training images.
        view_pipelines: Two transform lists; ``None`` reads them from ``train_dataloader``.
        interval: Score every ``interval`` epochs (and after the last one).
        max_images: Images to use (the first ones of ``dataset``).
        seed: Seed of the views.
    """

    title = 'view retrieval'
    feature_kind = 'view'

    def __init__(self,
                 dataset: Optional[Dict[str, Any]],
                 view_pipelines: Optional[Sequence[Sequence[dict]]] = None,
                 interval: int = 5,
                 max_images: int = 256,
                 seed: int = 0) -> None:
        super().__init__(interval)
        if max_images < 2:
            raise ValueError(f'ViewRetrievalHook: max_images must be >= 2, got {max_images}')
        self.dataset_cfg = dataset
        self.view_pipelines = view_pipelines
        self.max_images = max_images
        self.seed = seed
        self.split = 'held-out' if dataset is not None else 'training (no held-out split)'

    def prepare(self, runner: Any) -> tuple:
        """The two fixed views of every held-out (or training) image."""
        pipelines = self.view_pipelines or training_view_pipelines(runner.cfg)
        if not pipelines:
            raise ValueError('no view_pipelines given and the training data set has no MultiView transform')
        cfg = self.dataset_cfg if self.dataset_cfg is not None else training_image_list(runner.cfg)
        if not cfg:
            raise ValueError('no dataset given and the config has no train_dataloader.dataset')
        paths = [info['img_path'] for info in scene_data_infos(cfg, limit=self.max_images)]
        where = cfg.get('ann_file') or cfg.get('data_prefix') or cfg.get('data_root')
        if len(paths) < 2:
            raise ValueError(f'ViewRetrievalHook: {where!r} has {len(paths)} image(s); view retrieval needs at least 2')
        skipped: List[str] = []
        views = make_view_pairs(paths, pipelines, seed=self.seed, skipped=skipped)
        if skipped:
            more = f'; and {len(skipped) - 20} more' if len(skipped) > 20 else ''
            runner.logger.warning(f'{self.title}: left out {len(skipped)} unreadable image(s): '
                                  f'{"; ".join(skipped[:20])}{more}')
        if len(views[0]) < 2:
            raise ValueError(f'ViewRetrievalHook: {where!r} has {len(views[0])} readable image(s) of the first '
                             f'{len(paths)}; view retrieval needs at least 2')
        return views

    def measure(self, model: Any, data: tuple) -> Dict[str, Any]:
        return view_retrieval(model, data)

    def report(self, res: Dict[str, Any], init: Dict[str, Any]) -> Tuple[Dict[str, float], str, int]:
        scalars = {
            'probe/view_top1': res['top1'], 'probe/view_top1_init': init['top1'], 'probe/view_chance': res['chance'],
            'probe/view_rank': res['rank'], 'probe/view_rank_init': init['rank']
        }
        text = (f'top-1 {res["top1"]:.4f} on {res["num_images"]} {self.split} images (at start {init["top1"]:.4f}, '
                f'chance {res["chance"]:.4f}); feature rank {res["rank"]:.1f} (at start {init["rank"]:.1f})')
        return scalars, text, 2 * res['num_images']
