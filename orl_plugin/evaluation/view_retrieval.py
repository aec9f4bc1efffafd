"""Held-out view retrieval: does the backbone recognise a scene across two augmented views?

Stage 1's own question, on images it never trained on, and the features' effective rank, which shows BYOL's
known failure (dimensional collapse: the features fall into a few directions while the loss still falls)
without labels. It says nothing about object categories: that is :mod:`orl_plugin.evaluation.object_probe`'s.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.registry import DefaultScope

from orl_plugin.datasets.transforms.loading import BadImageError
from orl_plugin.evaluation.object_probe import count_nonfinite, encode_in_eval_mode


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global generators the transforms draw from, and give the training its own back."""
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_rng_state(torch_state)


def make_view_pairs(img_paths: Sequence[str],
                    view_pipelines: Sequence[Sequence[dict]],
                    seed: int = 0,
                    skipped: Optional[List[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Two views of every image, one from each of the two ``view_pipelines`` (mmpretrain
    transform configs, e.g. ``view_pipeline1`` / ``view_pipeline2`` of the stage-1 data config).
    The same ``seed`` gives the same views, so scores taken during a run are comparable.
    With a ``skipped`` list, an unreadable image (``BadImageError``) is left out and its
    ``'path (reason)'`` appended there; without one the error propagates.

    Returns:
        Two ``(N, H, W, 3)`` uint8 arrays (the loader's BGR order); the pipelines must end in
        a fixed size (``RandomResizedCrop`` does).
    """
    if len(view_pipelines) != 2:
        raise ValueError(f'view retrieval needs two view pipelines, got {len(view_pipelines)}')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipes = [Compose([dict(type='LoadImageOrSkip'), *p]) for p in view_pipelines]
    views: List[List[np.ndarray]] = [[], []]
    with _seeded(seed):
        for path in img_paths:
            try:
                pair = [pipe(dict(img_path=path)) for pipe in pipes]
            except BadImageError as e:
                if skipped is None:
                    raise
                skipped.append(f'{path} ({e.reason})')
                continue
            for out, res in zip(views, pair):
                if res is None:
                    raise ValueError(f'view retrieval: the view pipeline dropped image {path}')
                out.append(np.asarray(res['img'], np.uint8))
    if not views[0]:
        raise ValueError(f'view retrieval: none of the {len(img_paths)} images could be read')
    shapes = {v.shape for vs in views for v in vs}
    if len(shapes) > 1:
        raise ValueError(f'view retrieval: views differ in size {sorted(shapes)}; end the pipelines '
                         'in a fixed-size crop')
    return np.stack(views[0]), np.stack(views[1])


def effective_rank(feats: torch.Tensor, min_variance: float = 1e-8) -> float:
    """Effective rank (Roy & Vetterli, 2007) of the covariance of ``(N, D)`` features: ``exp`` of
    the entropy of its eigenvalues normalised to sum 1, i.e. how many principal directions share
    the features' variance. ``k`` equally used orthogonal directions give ``k``; features without
    variance (below ``min_variance`` in all, e.g. a collapsed network's one output) give 1;
    features with a NaN or inf give NaN.

    The features are centred first: the direction all of them share (random ReLU features are
    nearly parallel) is not a direction they spread over.
    """
    x = feats.double()
    if not bool(torch.isfinite(x).all()):
        return float('nan')
    x = x - x.mean(dim=0, keepdim=True)
    var = torch.linalg.svdvals(x)**2
    if float(var.sum()) / max(len(x), 1) < min_variance:
        return 1.0
    p = var / var.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def view_retrieval(model: torch.nn.Module,
                   views: Tuple[np.ndarray, np.ndarray],
                   batch_size: int = 128) -> Dict[str, float]:
    """Top-1 retrieval of each image's other view among all ``N`` images' views, averaged over
    both directions. The model runs in eval mode (restored afterwards).

    Both views are embedded with the online backbone (avgpool + L2, the feature 2a and 2c use); a view counts
    as retrieved when its nearest view of the other kind comes from the same image. Random weights already
    match some views (colour and layout survive the augmentations), so the value at the start is the level to
    beat; a collapsed network (the same output for every input) scores chance, ``1 / N``.

    Returns:
        ``top1``, ``chance`` (``1 / N``), ``num_images``, ``rank`` (the :func:`effective_rank`
        of all ``2N`` view features) and ``num_nonfinite`` (views whose feature has a NaN or inf).
    """
    v1, v2 = views
    if len(v1) < 2 or len(v1) != len(v2):
        raise ValueError(f'view retrieval needs two equally long view sets of >= 2 images, '
                         f'got {len(v1)} and {len(v2)}')
    f1, f2 = encode_in_eval_mode(model, v1, v2, batch_size=batch_size)
    sim = f1 @ f2.t()
    target = torch.arange(len(v1), device=sim.device)
    top1 = 0.5 * (float((sim.argmax(1) == target).float().mean()) + float((sim.argmax(0) == target).float().mean()))
    return dict(
        top1=top1,
        chance=1.0 / len(v1),
        num_images=int(len(v1)),
        rank=effective_rank(torch.cat([f1, f2]).cpu()),
        num_nonfinite=count_nonfinite(f1, f2))
