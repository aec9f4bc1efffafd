"""Object-level kNN probe: how well a backbone's features tell ground-truth object crops apart.

Stage-1 losses fall whether or not the features get better, and image-level KNN precision saturates on scenes
that share categories; the probe asks what stage 2c depends on: do crops of the same object category land near
each other? With one annotated set (e.g. COCO val2017) it takes a class-balanced sample of its objects and
classifies every crop among the crops of the other images (:func:`leave_one_image_out_probe`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from orl_plugin.datasets.transforms.crop_boxes import crop_boxes
from orl_plugin.datasets.transforms.loading import BadImageError, read_image
from orl_plugin.models.roi_feature import RoIFeature


def object_crops(data_list: Sequence[dict],
                 size: int = 64,
                 min_side: float = 8.0,
                 max_objects: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Crops of the annotated objects of ``data_list`` (SceneImageDataset infos: ``img_path``,
    ``gt_bboxes`` xyxy, ``gt_labels``), resized to ``size`` with the 2c crop; images in the
    loader's BGR order. Boxes with a side under ``min_side`` px are left out.

    Returns:
        ``(N, size, size, 3)`` uint8 crops and ``(N,)`` int64 labels, in data-list order.
    """
    crops: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    total = 0
    for info in data_list:
        boxes = np.asarray(info.get('gt_bboxes', np.zeros((0, 4))), np.float32).reshape(-1, 4)
        if not len(boxes):
            continue
        xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1))
        keep = (xywh[:, 2] >= min_side) & (xywh[:, 3] >= min_side)
        if not keep.any():
            continue
        img = read_image(info['img_path'])  # the training decoder: GT boxes fit its orientation
        crops.append(crop_boxes(img, xywh[keep].astype(np.int64), size))
        labels.append(np.asarray(info['gt_labels'], np.int64).reshape(-1)[keep])
        total += int(keep.sum())
        if max_objects and total >= max_objects:
            break
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, ), np.int64)
    c, lab = np.concatenate(crops), np.concatenate(labels)
    if max_objects:
        c, lab = c[:max_objects], lab[:max_objects]
    return c, lab


def knn_classify(ref_feats: torch.Tensor,
                 ref_labels: torch.Tensor,
                 query_feats: torch.Tensor,
                 num_classes: int,
                 k: int = 20,
                 temperature: float = 0.07,
                 exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weighted kNN vote: each of the ``k`` most cosine-similar reference rows votes for its
    label with weight ``exp(sim / temperature)``. Features must be L2-normalised. ``exclude``, a
    ``(Q, R)`` bool mask, keeps the marked pairs from voting (e.g. crops of the query's own image).

    Returns:
        ``(Q,)`` predicted labels.
    """
    if len(ref_feats) == 0:
        raise ValueError('knn_classify: no reference features')
    k = min(k, len(ref_feats))
    sim = query_feats @ ref_feats.t()
    if exclude is not None:
        sim = sim.masked_fill(exclude.to(sim.device), float('-inf'))  # exp(-inf / T) = 0: no vote
    top_sim, top_idx = sim.topk(k, dim=1)
    votes = torch.zeros(len(query_feats), num_classes, dtype=sim.dtype, device=sim.device)
    votes.scatter_add_(1, ref_labels[top_idx], (top_sim / temperature).exp())
    return votes.argmax(dim=1)


@torch.no_grad()
def encode_in_eval_mode(model: torch.nn.Module, *crop_sets: np.ndarray, batch_size: int = 128) -> List[torch.Tensor]:
    """The 2c feature (:class:`RoIFeature`) of each set with the model in eval mode (BN running
    statistics, as 2c uses them); the model's mode is restored afterwards, also on error."""
    was_training = model.training
    model.eval()
    encode = RoIFeature()
    try:
        return [encode(model, crops, batch_size=batch_size) for crops in crop_sets]
    finally:
        model.train(was_training)


def count_nonfinite(*feats: torch.Tensor) -> int:
    """Rows (embeddings) holding a NaN or inf, over all ``feats``: a diverged network, or broken
    BN statistics, gives them, and any score taken on them means nothing."""
    return sum(int((~torch.isfinite(f)).any(dim=1).sum()) for f in feats)


@torch.no_grad()
def object_knn_probe(model: torch.nn.Module,
                     ref: Tuple[np.ndarray, np.ndarray],
                     query: Tuple[np.ndarray, np.ndarray],
                     k: int = 20,
                     temperature: float = 0.07,
                     batch_size: int = 128) -> Dict[str, float]:
    """Embed the reference and query crops with ``model``'s online backbone and score the
    weighted kNN classifier on the query crops.

    The crops are embedded as 2c embeds its boxes (``RoIFeature``: avgpool + L2); each query crop is classified
    by a similarity-weighted vote of its ``k`` nearest reference crops (the weighted kNN of Wu et al. 2018, used
    by most self-supervised benchmarks). The model is put in eval mode for the forward
    (BN running statistics, as 2c uses them) and restored afterwards.

    Returns:
        ``top1`` accuracy, ``chance`` (share of the most common query class: the best constant
        answer), the crop counts and ``num_nonfinite`` (:func:`count_nonfinite` of all crops).
    """
    (ref_crops, ref_labels), (q_crops, q_labels) = ref, query
    if len(ref_crops) == 0 or len(q_crops) == 0:
        raise ValueError(f'object probe: needs annotated objects in both splits '
                         f'(got {len(ref_crops)} reference and {len(q_crops)} query crops)')
    f_ref, f_q = encode_in_eval_mode(model, ref_crops, q_crops, batch_size=batch_size)
    num_classes = int(max(ref_labels.max(), q_labels.max())) + 1
    device = f_ref.device
    pred = knn_classify(f_ref, torch.from_numpy(ref_labels).to(device), f_q, num_classes, k, temperature)
    top1 = float((pred.cpu().numpy() == q_labels).mean())
    return dict(
        top1=top1,
        chance=float(np.bincount(q_labels).max() / len(q_labels)),
        num_reference=int(len(ref_labels)),
        num_query=int(len(q_labels)),
        num_nonfinite=count_nonfinite(f_ref, f_q))


def select_objects(data_list: Sequence[dict],
                   max_per_class: int,
                   min_side: float = 32.0,
                   seed: int = 0) -> List[Tuple[int, int]]:
    """A class-balanced sample of the annotated objects of ``data_list`` (SceneImageDataset infos):
    at most ``max_per_class`` boxes of each class (0: all), drawn in a random order fixed by
    ``seed`` so that they spread over the images, from the boxes with both sides >= ``min_side``
    px. Reads no image.

    Returns:
        ``(info index, box index)`` pairs, in data-list order.
    """
    candidates = []
    for i, info in enumerate(data_list):
        boxes = np.asarray(info.get('gt_bboxes', np.zeros((0, 4))), np.float32).reshape(-1, 4)
        labels = np.asarray(info.get('gt_labels', np.zeros((0, ), np.int64)), np.int64).reshape(-1)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        candidates += [(i, j, int(labels[j])) for j in np.flatnonzero(sides >= min_side)]
    order = np.random.default_rng(seed).permutation(len(candidates))
    taken: Dict[int, int] = {}
    chosen = []
    for idx in order:
        i, j, label = candidates[idx]
        if max_per_class and taken.get(label, 0) >= max_per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        chosen.append((i, j))
    return sorted(chosen)


def class_balanced_crops(data_list: Sequence[dict],
                         max_per_class: int,
                         size: int = 96,
                         min_side: float = 32.0,
                         seed: int = 0,
                         skipped: Optional[List[str]] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of :func:`select_objects`' boxes, each image read once, resized to ``size`` with the
    2c crop (images in the loader's BGR order). With a ``skipped`` list, an unreadable image is left
    out and its ``'path (reason)'`` appended there; without one the error propagates.

    Returns:
        ``(N, size, size, 3)`` uint8 crops, ``(N,)`` int64 labels and ``(N,)`` int64 image indices
        (into ``data_list``: the crops of one image share it).
    """
    by_image: Dict[int, List[int]] = {}
    for i, j in select_objects(data_list, max_per_class, min_side, seed):
        by_image.setdefault(i, []).append(j)
    crops: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    images: List[np.ndarray] = []
    for i, box_idx in by_image.items():
        info = data_list[i]
        try:
            img = read_image(info['img_path'])  # the training decoder: GT boxes fit its orientation
        except BadImageError as e:
            if skipped is None:
                raise
            skipped.append(f'{info["img_path"]} ({e.reason})')
            continue
        boxes = np.asarray(info['gt_bboxes'], np.float32).reshape(-1, 4)[box_idx]
        xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)).astype(np.int64)
        crops.append(crop_boxes(img, xywh, size))
        labels.append(np.asarray(info['gt_labels'], np.int64).reshape(-1)[box_idx])
        images.append(np.full(len(box_idx), i, np.int64))
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, ), np.int64), np.zeros((0, ), np.int64)
    return np.concatenate(crops), np.concatenate(labels), np.concatenate(images)


@torch.no_grad()
def leave_one_image_out_probe(model: torch.nn.Module,
                              crops: np.ndarray,
                              labels: np.ndarray,
                              images: np.ndarray,
                              k: int = 20,
                              temperature: float = 0.07,
                              batch_size: int = 128) -> Dict[str, float]:
    """The weighted kNN probe on one set of crops: every crop is classified by the ``k`` nearest
    crops of *other* images (crops of its own image share its context, so they may not vote).
    Features as :func:`object_knn_probe` (online backbone, eval mode, restored afterwards).

    Returns:
        ``top1``, ``chance`` (share of the most common class), ``num_crops``, ``num_classes``
        (classes present) and ``num_nonfinite``.
    """
    if len(np.unique(images)) < 2:
        raise ValueError(f'object probe: needs objects of at least 2 images (got {len(crops)} crops of '
                         f'{len(np.unique(images))} image)')
    (feats, ) = encode_in_eval_mode(model, crops, batch_size=batch_size)
    group = torch.from_numpy(images).to(feats.device)
    label = torch.from_numpy(labels).to(feats.device)
    pred = knn_classify(
        feats, label, feats, int(labels.max()) + 1, k, temperature, exclude=group[:, None] == group[None, :])
    return dict(
        top1=float((pred.cpu().numpy() == labels).mean()),
        chance=float(np.bincount(labels).max() / len(labels)),
        num_crops=int(len(labels)),
        num_classes=int(len(np.unique(labels))),
        num_nonfinite=count_nonfinite(feats))
