"""Probes of a backbone on a held-out probe set: object kNN and linear probes, view retrieval, rank."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

#: Weight decays the linear probe chooses from, by cross-validated accuracy on the reference crops (a grid
#: fine enough that the choice between neighbours moves the score by less than the probe's sampling error).
WEIGHT_DECAYS = (1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 1e-1, 3e-1)


def fit_linear(features: torch.Tensor,
               labels: np.ndarray,
               weight_decay: float,
               iters: int = 200) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on standardised features (L-BFGS, L2 penalty); returns the
    standardisation (mean, std) and the weights (W, b)."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = (features - mean) / std
    num_classes = int(labels.max()) + 1
    w = torch.zeros(x.size(1), num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    target = torch.as_tensor(labels, dtype=torch.long)
    optim = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20, line_search_fn='strong_wolfe')

    def closure() -> torch.Tensor:
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, target) + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    return mean, std, w.detach(), b.detach()


def linear_correct(ref: torch.Tensor, ref_labels: np.ndarray, query: torch.Tensor, query_labels: np.ndarray,
                   weight_decay: float) -> np.ndarray:
    """Per query, whether the linear classifier fitted on ``ref`` names its class."""
    mean, std, w, b = fit_linear(ref.float().cpu(), ref_labels, weight_decay)
    pred = (((query.float().cpu() - mean) / std) @ w + b).argmax(1).numpy()
    return (pred == query_labels) & (query_labels < w.size(1))


def linear_accuracy(ref: torch.Tensor, ref_labels: np.ndarray, query: torch.Tensor, query_labels: np.ndarray,
                    weight_decay: float) -> float:
    """Top-1 on ``query`` of the linear classifier fitted on ``ref``."""
    return float(linear_correct(ref, ref_labels, query, query_labels, weight_decay).mean())


def correct_string(correct: np.ndarray) -> str:
    """Per-query correctness as '0'/'1' characters (JSON-friendly; pairs two networks' probes crop by crop)."""
    return ''.join('1' if c else '0' for c in correct)


def crop_paired_difference(a: str, b: str) -> Dict[str, float]:
    """Accuracy difference of two probes of the same query crops and its standard error over the crops
    (the probe set's sampling noise only, not the noise of training seeds)."""
    if len(a) != len(b) or not a:
        raise ValueError(f'probes of different query sets ({len(a)} and {len(b)} crops)')
    d = np.frombuffer(a.encode(), np.uint8).astype(float) - np.frombuffer(b.encode(), np.uint8).astype(float)
    return dict(mean=float(d.mean()), se=float(d.std(ddof=1) / np.sqrt(len(d))), crops=len(d))


def linear_probe(ref: torch.Tensor,
                 ref_labels: np.ndarray,
                 query: torch.Tensor,
                 query_labels: np.ndarray,
                 weight_decays: Sequence[float] = WEIGHT_DECAYS,
                 folds: int = 5) -> Dict[str, Any]:
    """The linear probe of frozen features: its weight decay chosen by ``folds``-fold cross-validation on
    the reference crops (seeded folds), then refitted on the whole reference and scored on the queries
    (``correct``: per query)."""
    perm = torch.randperm(len(ref_labels), generator=torch.Generator().manual_seed(0)).numpy()
    parts = np.array_split(perm, folds)
    scores = {}
    for wd in weight_decays:
        accs = []
        for k in range(folds):
            fit = np.concatenate([p for i, p in enumerate(parts) if i != k])
            accs.append(linear_accuracy(ref[fit], ref_labels[fit], ref[parts[k]], ref_labels[parts[k]], wd))
        scores[wd] = float(np.mean(accs))
    best = max(scores, key=lambda wd: (scores[wd], wd))  # ties: the stronger penalty
    correct = linear_correct(ref, ref_labels, query, query_labels, best)
    return dict(top1=float(correct.mean()), weight_decay=best, correct=correct)


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the normalised squared singular values of the centred features."""
    s = torch.linalg.svdvals(features.float() - features.float().mean(0))
    p = s**2 / (s**2).sum()
    return float(torch.exp(-(p * torch.log(p + 1e-12)).sum()))


def recalibrate_bn(model: torch.nn.Module, crops: np.ndarray) -> None:
    """The backbone's BN statistics measured on ``crops`` (cumulative average of train-mode
    forwards of the 2c feature): the same statistics for every network probed."""
    from orl_plugin.models import RoIFeature
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    was_training = model.training
    model.train()
    with torch.no_grad():
        RoIFeature()(model, crops)
    model.train(was_training)


class ProbeSet:
    """A probe set of scenes with ground truth: object crops of its train split (reference) and val
    split (queries), and two views of up to 256 val images for view retrieval, read on first use.

    Args:
        data_root: Synthetic scenes (``annotations/instances_{train,val}.json``, ``images/``).
        view_pipelines: The two view pipelines of view retrieval (mmpretrain transform dicts).
        max_objects: Cap on the crops of each split.
        crop_size: Side of the object crops (the 2c crop).
        weight_decays: The linear probe's grid.
        folds: The linear probe's cross-validation folds.
    """

    def __init__(self,
                 data_root: str,
                 view_pipelines: Sequence[Sequence[dict]],
                 max_objects: int = 2000,
                 crop_size: int = 64,
                 weight_decays: Sequence[float] = WEIGHT_DECAYS,
                 folds: int = 5) -> None:
        self.data_root = data_root
        self.view_pipelines = copy.deepcopy(list(view_pipelines))
        self.max_objects = max_objects
        self.crop_size = crop_size
        self.weight_decays = tuple(weight_decays)
        self.folds = folds
        self._data: Optional[tuple] = None

    def _infos(self, split: str) -> list:
        from orl_plugin.datasets.scene_dataset import scene_data_infos
        return scene_data_infos(
            dict(
                data_root=self.data_root,
                ann_file=f'annotations/instances_{split}.json',
                data_prefix=dict(img_path='images/')))

    @property
    def data(self) -> tuple:
        """((reference crops, labels), (query crops, labels)), view pairs."""
        if self._data is None:
            from orl_plugin.evaluation.object_probe import object_crops
            from orl_plugin.evaluation.view_retrieval import make_view_pairs
            val = self._infos('val')
            splits = (object_crops(self._infos('train'), self.crop_size, max_objects=self.max_objects),
                      object_crops(val, self.crop_size, max_objects=self.max_objects))
            views = make_view_pairs([i['img_path'] for i in val[:256]], self.view_pipelines, seed=0)
            self._data = (splits, views)
        return self._data

    @torch.no_grad()
    def probe(self, model: torch.nn.Module) -> Dict[str, Any]:
        """Every figure of ``model``'s backbone: as it is (its own BN statistics) and with BN
        recalibrated on the reference crops. The model's BN statistics are changed."""
        from orl_plugin.evaluation.object_probe import encode_in_eval_mode, object_knn_probe
        from orl_plugin.evaluation.view_retrieval import view_retrieval
        (ref, ref_labels), (query, query_labels) = self.data[0]
        out: Dict[str, Any] = {}
        for tag in ('', '_bn_recalibrated'):
            if tag:
                recalibrate_bn(model, ref)
            knn = object_knn_probe(model, (ref, ref_labels), (query, query_labels))
            f_ref, f_query = encode_in_eval_mode(model, ref, query)
            with torch.enable_grad():
                lin = linear_probe(f_ref, ref_labels, f_query, query_labels, self.weight_decays, self.folds)
            view = view_retrieval(model, self.data[1])
            out.update({
                f'object_knn{tag}': knn['top1'],
                f'object_linear{tag}': lin['top1'],
                f'object_linear_weight_decay{tag}': lin['weight_decay'],
                f'object_linear_correct{tag}': correct_string(lin['correct']),
                f'object_rank{tag}': effective_rank(f_query),
                f'view_retrieval{tag}': view['top1'],
                f'view_rank{tag}': view['rank'],
            })
        out.update(
            object_chance=knn['chance'],
            object_queries=knn['num_query'],
            object_references=knn['num_reference'],
            view_retrieval_chance=view['chance'],
            view_retrieval_images=view['num_images'])
        return out
