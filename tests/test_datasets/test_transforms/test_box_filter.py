"""The ORL proposal filter: size, aspect ratio, greedy IoU de-duplication, top-k, fallback."""
import numpy as np
import pytest

from orl_plugin.datasets.transforms.box_filter import FilterBoxes, filter_boxes


def _official_box_filter(boxes, min_size, max_ratio, topN, max_iou_thr):
    """The official ORL ``box_filter`` loop, written out independently for comparison."""
    kept = []
    for box in boxes:
        w, h = box[2], box[3]
        if min_size and (w < min_size or h < min_size):
            continue
        if max_ratio and (w / h > max_ratio or h / w > max_ratio):
            continue
        if max_iou_thr and kept:
            k = np.array(kept, dtype=np.float64)
            ix = np.maximum(np.minimum(k[:, 0] + k[:, 2], box[0] + box[2]) - np.maximum(k[:, 0], box[0]), 0)
            iy = np.maximum(np.minimum(k[:, 1] + k[:, 3], box[1] + box[3]) - np.maximum(k[:, 1], box[1]), 0)
            inter = ix * iy
            iou = inter / (k[:, 2] * k[:, 3] + box[2] * box[3] - inter)
            if iou.max() > max_iou_thr:
                continue
        kept.append(box)
    if not kept:
        kept.append(boxes[0])
    return np.array(kept[:topN] if topN else kept)


def test_size_threshold_is_inclusive():
    boxes = np.array([[0, 0, 95, 200], [0, 0, 200, 95], [0, 0, 96, 96], [300, 300, 97, 120]])
    out = filter_boxes(boxes, min_size=96, max_ratio=3, max_iou=0.5, topk=100)
    np.testing.assert_array_equal(out, boxes[2:])


def test_aspect_ratio_both_orientations():
    boxes = np.array([
        [0, 0, 300, 100],  # ratio 3.0: kept (not > 3)
        [0, 400, 301, 100],  # 3.01: dropped
        [500, 0, 100, 301],  # 3.01 upright: dropped
        [500, 500, 100, 300]
    ])  # 3.0 upright: kept
    out = filter_boxes(boxes, min_size=96, max_ratio=3, max_iou=0.5, topk=100)
    np.testing.assert_array_equal(out, boxes[[0, 3]])


def test_greedy_iou_only_against_kept_boxes_in_order():
    a = [0, 0, 100, 100]
    b = [30, 0, 100, 100]  # IoU(a, b) = 70/130 = 0.54 > 0.5: dropped
    c = [60, 0, 100, 100]  # IoU(a, c) = 0.25; IoU(b, c) = 0.54 but b was not kept: kept
    d = [0, 0, 100, 50]  # IoU(a, d) = 0.5 exactly: kept (only > max_iou drops)
    out = filter_boxes(np.array([a, b, c, d]), min_size=0, max_ratio=3, max_iou=0.5, topk=100)
    np.testing.assert_array_equal(out, np.array([a, c, d]))
    # The order decides which of two overlapping boxes survives.
    out = filter_boxes(np.array([b, a, c]), min_size=0, max_ratio=3, max_iou=0.5, topk=100)
    np.testing.assert_array_equal(out, np.array([b]))  # a and c overlap b by 0.54


def test_topk_keeps_the_first_survivors():
    boxes = np.array([[i * 200, 0, 100, 100] for i in range(6)])
    boxes = np.insert(boxes, 1, [[0, 0, 10, 10]], axis=0)  # too small: does not use a slot
    out = filter_boxes(boxes, min_size=96, max_ratio=3, max_iou=0.5, topk=3)
    np.testing.assert_array_equal(out, boxes[[0, 2, 3]])


def test_fallback_is_raw_box_zero_and_empty_input_stays_empty():
    boxes = np.array([[5, 6, 10, 12], [0, 0, 20, 20]], dtype=np.int32)
    out = filter_boxes(boxes, min_size=96)
    np.testing.assert_array_equal(out, boxes[:1])
    assert out.dtype == np.int32
    assert filter_boxes(np.zeros((0, 4), np.int32)).shape == (0, 4)
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        filter_boxes(np.zeros((3, 5)))


def test_matches_the_official_loop_on_random_boxes():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 120))
        boxes = np.stack(
            [rng.integers(0, 200, n),
             rng.integers(0, 200, n),
             rng.integers(1, 250, n),
             rng.integers(1, 250, n)],
            axis=1)
        min_size = int(rng.choice([0, 20, 64, 96]))
        max_ratio = float(rng.choice([0, 2, 3]))
        max_iou = float(rng.choice([0, 0.3, 0.5, 0.7]))
        topk = int(rng.choice([0, 1, 5, 100]))
        ref = _official_box_filter(list(boxes), min_size, max_ratio, topk, max_iou)
        out = filter_boxes(boxes, min_size, max_ratio, max_iou, topk)
        np.testing.assert_array_equal(out, ref)


def test_transform_writes_kept_boxes_and_whole_image_fallback():
    t = FilterBoxes(min_size=32, max_ratio=3, max_iou=0.5, topk=2)
    res = t(
        dict(
            proposals=np.array([[0, 0, 40, 40], [1, 1, 40, 40], [100, 0, 40, 50], [200, 0, 40, 40]]),
            img_shape=(120, 250)))
    np.testing.assert_array_equal(res['kept_boxes'], [[0, 0, 40, 40], [100, 0, 40, 50]])
    assert res['kept_boxes'].dtype == np.int64
    res = t(dict(proposals=np.zeros((0, 4)), img=np.zeros((120, 250, 3), np.uint8)))
    np.testing.assert_array_equal(res['kept_boxes'], [[0, 0, 250, 120]])
    with pytest.raises(KeyError, match='proposals'):
        t(dict(img_path='x.jpg'))
