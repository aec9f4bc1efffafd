"""Object-level kNN probe: how well a backbone's features tell ground-truth object crops apart.

Self-supervised stage-1 losses go down whether or not the features get better, and on scene
images the image-level KNN category precision saturates (most synthetic scenes share a
category with most others). The probe asks the question stage 2c depends on: do crops of the same
object category land near each other? Crops of the annotated objects of a *reference* split are
embedded with the online backbone (the 2c feature, ``RoIFeature``: avgpool + L2), and every crop
of a *query* split is classified by a similarity-weighted vote of its ``k`` nearest reference
crops (the weighted kNN of Wu et al. 2018, used by most self-supervised benchmarks). Reported: top-1
accuracy, beside the chance level of always answering the most common category of the queries.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from orl_plugin.datasets.transforms.crop_boxes import crop_boxes
from orl_plugin.datasets.transforms.loading import read_image
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
                 temperature: float = 0.07) -> torch.Tensor:
    """Weighted kNN vote: each of the ``k`` most cosine-similar reference rows votes for its
    label with weight ``exp(sim / temperature)``. Features must be L2-normalised.

    Returns:
        ``(Q,)`` predicted labels.
    """
    if len(ref_feats) == 0:
        raise ValueError('knn_classify: no reference features')
    k = min(k, len(ref_feats))
    sim = query_feats @ ref_feats.t()
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
    weighted kNN classifier on the query crops. The model is put in eval mode for the forward
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
