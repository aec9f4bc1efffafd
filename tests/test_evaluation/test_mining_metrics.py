"""Mining metrics on hand-made cases with known answers: both object criteria of the mined pairs,
their random-pair levels, and the chance level of proposal recall."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from orl_plugin.evaluation.box_metrics import ObjectMasks, matched_gt_labels, on_object
from orl_plugin.evaluation.correspondence_metric import pair_precision
from orl_plugin.evaluation.selective_search_metric import SelectiveSearchMetric, random_placement


def test_on_object_criteria():
    gt = np.array([[0, 0, 40, 40]], np.float32)  # xyxy
    boxes = np.array([
        [0, 0, 40, 40],  # the object: IoU 1, inside
        [0, 0, 20, 20],  # a quarter of it: IoU 0.25, inside
        [20, 0, 40, 40],  # half out: IoU 1/3, inside 1/2 (threshold inclusive)
        [30, 0, 40, 40],  # mostly out: inside 10/40
        [-10, -10, 60, 60]
    ])  # holds the object: IoU 1600/3600, inside 1600/3600
    assert on_object(boxes, gt, 'iou')[:, 0].tolist() == [True, False, False, False, False]
    assert on_object(boxes, gt, 'inside')[:, 0].tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match='criterion'):
        on_object(boxes, gt, 'centre')
    m = matched_gt_labels(boxes, gt, np.array([2]), 0.5, criterion='inside')
    assert m[:, 2].tolist() == [True, True, True, False, False] and not m[:, :2].any()


def _two_images():
    # image 0: A (cat 0) at [0, 0, 40, 40], B (cat 1) at [100, 0, 140, 40];
    # image 1: C (cat 0) at [0, 0, 40, 40], D (cat 1) at [100, 100, 140, 140].
    gt_b = [
        np.array([[0, 0, 40, 40], [100, 0, 140, 40]], np.float32),
        np.array([[0, 0, 40, 40], [100, 100, 140, 140]], np.float32)
    ]
    gt_l = [np.array([0, 1]), np.array([0, 1])]
    # kept boxes (xywh); q2 and n2 are quarters of an object: inside it, IoU 0.25.
    q1, q2, q3, q4 = [0, 0, 40, 40], [0, 0, 20, 20], [100, 0, 40, 40], [200, 200, 40, 40]
    n1, n2, n3 = [0, 0, 40, 40], [100, 100, 20, 20], [200, 0, 40, 40]
    kept = [np.array([q1, q2, q3, q4]), np.array([n1, n2, n3])]
    pairs = [
        [
            np.array([
                q1 + n1,  # A-C: object pair and same category by both criteria
                q2 + n1,  # part of A - C: object pair only inside; same category
                q3 + n2,  # B - part of D: object pair only inside; same category
                q2 + n2,  # part of A - part of D: object pair only inside; cat 0 vs 1
                q4 + n3
            ])
        ],  # background - background
        [np.array([n1 + q3])]
    ]  # C-B: object pair by both; cat 0 vs 1
    return pairs, np.array([[1], [0]]), gt_b, gt_l, kept


def test_pair_figures_for_both_criteria_and_their_random_levels():
    pairs, knn, gt_b, gt_l, kept = _two_images()
    r = pair_precision(pairs, knn, gt_b, gt_l, iou_thr=0.5, kept_boxes=kept, inside_thr=0.5)
    expected = dict(
        scored_pairs=6,
        # IoU criterion: object pairs A-C and C-B; only A-C shares the category.
        pair_precision=1 / 6,
        pair_object_rate=2 / 6,
        pair_precision_on_objects=1 / 2,
        object_pairs=2,
        # inside criterion: 5 object pairs, 3 of them same-category.
        pair_precision_inside=3 / 6,
        pair_object_rate_inside=5 / 6,
        pair_precision_on_objects_inside=3 / 5,
        object_pairs_inside=5,
        # random pairs, IoU: image 0 has 2 of 4 kept boxes on objects (cat 0, cat 1), image 1 has 1 of 3
        # (cat 0): P(object pair) = 2/4 * 1/3, P(same category) = 1/12 (q1-n1), either direction.
        pair_object_rate_random=1 / 6,
        pair_precision_random=1 / 12,
        pair_precision_on_objects_random=1 / 2,
        # random pairs, inside: 3 of 4 (cat 0, 0, 1) and 2 of 3 (cat 0, 1): P(object pair) = 1/2,
        # P(same category) = 3/12 (q1-n1, q2-n1, q3-n2).
        pair_object_rate_inside_random=1 / 2,
        pair_precision_inside_random=1 / 4,
        pair_precision_on_objects_inside_random=1 / 2,
        kept_object_rate=3 / 7,
        kept_object_rate_inside=5 / 7,
        inside_rule_masks=0.0)  # no masks given: the box rule
    assert set(r) == set(expected)
    for key, value in expected.items():
        assert r[key] == pytest.approx(value), key


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=rle['size'], counts=rle['counts'].decode())  # str counts, as read from JSON


def _triangle(size=100, x0=10, y0=10, side=80):
    """A right triangle filling the lower-left half of its box [x0, y0, side, side]: the box's
    upper-right corner is empty."""
    m = np.zeros((size, size), bool)
    yy, xx = np.mgrid[0:side, 0:side]
    m[y0:y0 + side, x0:x0 + side] = yy >= xx
    return m


def test_inside_on_the_objects_pixels():
    gt = np.array([[10, 10, 90, 90]], np.float32)
    boxes = np.array([[60, 12, 25, 25], [15, 60, 25, 25], [10, 10, 80, 80]])  # empty corner, body, whole box
    tri = [[10, 10, 10, 90, 90, 90]]  # the same triangle as a polygon (its pixels, up to the edge's raster)
    assert on_object(boxes, gt, 'inside')[:, 0].tolist() == [True, True, True]  # box rule
    for masks in (ObjectMasks([_rle(_triangle())]), ObjectMasks([tri], 100, 100), ObjectMasks([tri])):
        frac = masks.inside_fraction(boxes)[:, 0]
        assert frac[0] == 0 and frac[1] == 1 and 0.49 < frac[2] < 0.52
        assert on_object(boxes, gt, 'inside', 0.5, masks)[:, :1].tolist() == [[False], [True], [frac[2] >= 0.5]]
        assert on_object(boxes, gt, 'iou', 0.5, masks).tolist() == on_object(boxes, gt, 'iou').tolist()
    # uncompressed RLE (list counts, as COCO's crowd objects): the left half of the image is object
    half = ObjectMasks([dict(size=[100, 100], counts=[0, 50 * 100, 50 * 100])])
    assert half.inside_fraction(boxes)[:, 0].tolist() == [0.0, 1.0, 40 * 80 / 6400]
    m = matched_gt_labels(boxes, gt, np.array([2]), 0.5, 'inside', ObjectMasks([_rle(_triangle())]))
    assert m[:2, 2].tolist() == [False, True] and not m[:, :2].any()
    with pytest.raises(ValueError, match='aligned'):
        on_object(boxes, np.zeros((2, 4), np.float32), 'inside', 0.5, ObjectMasks([_rle(_triangle())]))


def test_pair_figures_on_masks():
    # As _two_images, but object A only fills the right half of its box [0, 0, 40, 40]: q1 (the
    # whole box) is half object (inside, threshold inclusive); q2 (its upper-left quarter) holds none.
    pairs, knn, gt_b, gt_l, kept = _two_images()
    a = np.zeros((256, 256), bool)
    a[0:40, 20:40] = True
    squares = []
    for x1, y1, x2, y2 in gt_b[0][1:].tolist() + gt_b[1].tolist():
        squares.append(np.zeros((256, 256), bool))
        squares[-1][int(y1):int(y2), int(x1):int(x2)] = True
    masks0 = [_rle(a), _rle(squares[0])]
    masks1 = [[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in gt_b[1].tolist()]  # polygons
    expected = dict(
        # inside on masks: object pairs q1-n1 (same category), q3-n2 (same), n1-q3 (0 vs 1)
        pair_precision_inside=2 / 6,
        pair_object_rate_inside=3 / 6,
        pair_precision_on_objects_inside=2 / 3,
        object_pairs_inside=3,
        # kept boxes on objects: q1, q3 of 4 (cat 0, 1); n1, n2 of 3 (cat 0, 1)
        kept_object_rate_inside=4 / 7,
        pair_object_rate_inside_random=2 / 4 * 2 / 3,
        pair_precision_inside_random=2 / 12,
        pair_precision_on_objects_inside_random=1 / 2)
    base = pair_precision(pairs, knn, gt_b, gt_l, kept_boxes=kept)
    sizes = [(256, 256), (256, 256)]
    # image 1's squares give what its boxes give, so masks on one image or both score the same
    for gt_masks, rule in (([masks0, None], 0.5), ([masks0, masks1], 1.0)):
        r = pair_precision(pairs, knn, gt_b, gt_l, kept_boxes=kept, gt_masks=gt_masks, img_sizes=sizes)
        assert r['inside_rule_masks'] == rule
        for key, value in expected.items():
            assert r[key] == pytest.approx(value), key
        assert {k: v for k, v in r.items() if 'inside' not in k} == {k: v for k, v in base.items() if 'inside' not in k}
    # without masks: the box rule (q2 lies in A's box)
    assert base['inside_rule_masks'] == 0.0 and base['object_pairs_inside'] == 5


def test_pair_figures_without_object_pairs():
    pairs, knn, gt_b, gt_l, kept = _two_images()
    only_background = [[pairs[0][0][-1:]], [np.zeros((0, 8), int)]]  # the background pair alone
    r = pair_precision(only_background, knn, gt_b, gt_l)
    assert r['scored_pairs'] == 1 and r['object_pairs'] == 0 and r['object_pairs_inside'] == 0
    assert np.isnan(r['pair_precision_on_objects']) and np.isnan(r['pair_precision_on_objects_inside'])
    assert not any(k.endswith('_random') for k in r)  # no kept boxes given, no random levels
    assert pair_precision([[np.zeros((0, 8), int)], [np.zeros((0, 8), int)]], knn, gt_b, gt_l) == {}


def test_random_placement_keeps_sizes_and_stays_inside():
    boxes = np.array([[5, 5, 30, 20], [0, 0, 100, 60], [10, 10, 200, 10]])
    a = random_placement(boxes, (100, 60), np.random.default_rng(0))
    b = random_placement(boxes, (100, 60), np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)  # seeded
    np.testing.assert_array_equal(a[:, 2:], [[30, 20], [100, 60], [100, 10]])  # sizes (clipped to the image)
    assert (a[:, :2] >= 0).all() and (a[:, 0] + a[:, 2] <= 100).all() and (a[:, 1] + a[:, 3] <= 60).all()
    np.testing.assert_array_equal(a[1], [0, 0, 100, 60])  # a whole-image box has one place to go
    many = random_placement(np.tile([[0, 0, 30, 20]], (4000, 1)), (100, 60), np.random.default_rng(1))
    assert many[:, 0].mean() == pytest.approx(35, abs=1.5) and many[:, 1].mean() == pytest.approx(20, abs=1)


def test_selective_search_metric_chance_levels(tmp_path):
    # 100 x 100 images. Image 0: a whole-image object and a whole-image proposal: found wherever a
    # box of that size goes (chance 1). Image 1: a 10-px object and a 60-px proposal on it: IoU
    # <= 100/3600 and inside <= 100/3600 wherever it goes (chance 0).
    metric = SelectiveSearchMetric(
        out_file=str(tmp_path / 'ss.orlstore'), filter_cfg=dict(min_size=50, max_ratio=3.0, max_iou=0.5, topk=100))
    metric.process(None, [
        dict(
            index=0,
            width=100,
            height=100,
            gt_bboxes=np.array([[0, 0, 100, 100]], np.float32),
            gt_labels=np.array([0]),
            proposals=np.array([[0, 0, 100, 100]], np.int32)),
        dict(
            index=1,
            width=100,
            height=100,
            gt_bboxes=np.array([[20, 20, 30, 30]], np.float32),
            gt_labels=np.array([0]),
            proposals=np.array([[20, 20, 10, 10], [0, 0, 60, 60]], np.int32)),
    ])
    res = metric.compute_metrics(metric.results)
    assert res['recall@0.5_raw'] == 1.0  # the 10-px proposal finds the small object
    assert res['recall@0.5_filtered'] == 0.5  # the filter (min side 50) drops it
    assert res['recall@0.5_filtered_random'] == 0.5
    assert 0.5 <= res['recall@0.5_raw_random'] <= 1.0  # the 10-px box at random may or may not hit
    assert res['mean_filtered_boxes'] == 1.0
    assert res['filtered_object_rate'] == res['filtered_object_rate_random'] == 0.5
    assert res['filtered_object_rate_inside'] == res['filtered_object_rate_inside_random'] == 0.5
    assert res['inside_rule_masks'] == 0.0
    # With a mask, image 0's object is its left 40 % only: the whole-image box is no longer inside it.
    left = np.zeros((100, 100), bool)
    left[:, :40] = True
    metric.results[0]['gt_masks'] = [_rle(left)]
    metric.results[1]['gt_masks'] = [[[20, 20, 30, 20, 30, 30, 20, 30]]]
    res = metric.compute_metrics(metric.results)
    assert res['inside_rule_masks'] == 1.0 and res['filtered_object_rate'] == 0.5
    assert res['filtered_object_rate_inside'] == res['filtered_object_rate_inside_random'] == 0.0


def test_selective_search_metric_image_size_from_the_boxes(tmp_path):
    # Without width/height (a folder with boxes from elsewhere) the image is the boxes' extent.
    metric = SelectiveSearchMetric(out_file=str(tmp_path / 'ss.orlstore'), filter_cfg=dict(min_size=10))
    metric.process(None, [
        dict(
            index=0,
            gt_bboxes=np.array([[0, 0, 80, 40]], np.float32),
            gt_labels=np.array([0]),
            proposals=np.array([[0, 0, 80, 40]], np.int32))
    ])
    res = metric.compute_metrics(metric.results)
    assert res['recall@0.5_filtered'] == res['recall@0.5_filtered_random'] == 1.0
