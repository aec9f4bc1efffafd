"""tools/analysis_tools/score_pairs.py: mined pairs scored against ground truth, masks where the file has them."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
from helpers import ROOT

from orl_plugin.store import write_correspondence_store
from orl_plugin.utils.error_policy import run_cli

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import score_pairs  # noqa: E402

# fills 7/8 of its box [10, 10, 40, 40]: the corner beyond x + y = 80 is empty
CUT_SQUARE = [10, 10, 50, 10, 50, 30, 30, 50, 10, 50]


def _coco(path, with_masks=True):
    images = [
        dict(id=1, file_name='a.jpg', width=100, height=100),
        dict(id=2, file_name='b.jpg', width=100, height=100)
    ]
    anns = [
        dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 40, 40], segmentation=[CUT_SQUARE]),
        dict(id=2, image_id=1, category_id=2, bbox=[60, 60, 30, 30], segmentation=[[60, 60, 90, 60, 90, 90, 60, 90]]),
        dict(id=3, image_id=2, category_id=1, bbox=[20, 20, 40, 40], segmentation=[[20, 20, 60, 20, 60, 60, 20, 60]]),
    ]
    for a in anns:
        a.update(iscrowd=0, area=float(a['bbox'][2] * a['bbox'][3]))
        if not with_masks:
            a.pop('segmentation')
    cats = [dict(id=1, name='one'), dict(id=2, name='two')]
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return str(path)


def _store(path):
    # image 0's neighbour is image 1 and the reverse; image 1 mined nothing
    pairs0 = np.array(
        [
            [10, 10, 40, 40, 20, 20, 40, 40],  # the cut square - the square, both category 1: an object pair, correct
            [60, 60, 30, 30, 20, 20, 40, 40],  # category 2 - category 1: an object pair, wrong
            [42, 42, 8, 8, 25, 25, 20, 20],  # the empty corner of the first object's box - inside the square
        ],
        dtype=np.float32)
    boxes = [pairs0[:, :4], pairs0[:, 4:]]
    return write_correspondence_store(
        str(path),
        boxes,
        np.array([[1], [0]]), [[pairs0], [np.zeros((0, 8), np.float32)]],
        file_names=['a.jpg', 'b.jpg'],
        image_ids=[1, 2])


def test_figures_by_both_rules(tmp_path):
    store = _store(tmp_path / 'corr.orlstore')
    masks = score_pairs.score(store, _coco(tmp_path / 'masks.json'))
    boxes = score_pairs.score(store, _coco(tmp_path / 'boxes.json', with_masks=False))
    for out in (masks, boxes):  # the IoU criterion does not depend on masks
        assert out['scored_pairs'] == 3
        assert out['pair_object_rate'] == pytest.approx(2 / 3)
        assert out['pair_precision_on_objects'] == pytest.approx(0.5)
    # the corner box lies inside the first object's box but not on its pixels
    assert masks['inside_rule_masks'] == 1.0 and boxes['inside_rule_masks'] == 0.0
    assert boxes['pair_object_rate_inside'] == pytest.approx(1.0)
    assert boxes['pair_precision_on_objects_inside'] == pytest.approx(2 / 3)
    assert masks['pair_object_rate_inside'] == pytest.approx(2 / 3)
    assert masks['pair_precision_on_objects_inside'] == pytest.approx(0.5)


def test_cli_table_json_and_one_line_errors(tmp_path, capsys):
    store = _store(tmp_path / 'corr.orlstore')
    out = tmp_path / 'score.json'
    run_cli(score_pairs.main, [store, _coco(tmp_path / 'm.json'), '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'judged on masks' in printed and '| pair_precision_on_objects | 0.5000 |' in printed
    assert 'nan' not in printed and '| kept_object_rate |' in printed  # no random level there: '-'
    assert json.load(open(out))['scored_pairs'] == 3
    no_anns = tmp_path / 'images_only.json'
    content = json.load(open(tmp_path / 'm.json'))
    del content['annotations']
    no_anns.write_text(json.dumps(content))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(score_pairs.main, [store, str(no_anns)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count('\n') == 0 and 'no "annotations"' in err and str(no_anns) in err
