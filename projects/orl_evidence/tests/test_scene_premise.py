"""``projects.orl_evidence.scene_premise``: the premise figures from ground truth, end to end on a tiny set."""
import json

import numpy as np
import pytest

from projects.orl_evidence import scene_premise as premise


def test_oracle_knn_stays_in_the_type():
    types = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    knn = premise.oracle_knn(types, 2, seed=0)
    for i, row in enumerate(knn):
        assert i not in row and len(set(row)) == 2 and (types[row] == types[i]).all()
    knn = premise.oracle_knn(types, 3, seed=0)  # types 1 and 2 have two others: one from another type
    assert (types[knn[3]] == 2).sum() == 2 and 3 not in knn[3] and len(set(knn[3])) == 3
    assert (types[knn[7]] == 3).all()


def test_premise_benchmark_end_to_end(tmp_path, capsys):
    args = ['--out', str(tmp_path), '--designs', 'v1', 'v2', '--num-images', '24', '--img-size', '96', '--k', '3']
    assert premise.main(args) == 0
    res = json.load(open(tmp_path / 'results.json'))
    v1, v2 = res['designs']['v1'], res['designs']['v2']
    assert 'knn_oracle' not in v1 and v2['knn_oracle'] > v2['knn_random']
    for r in (v1, v2):
        assert r['num_images'] == 24 and r['kept_boxes'] >= 1
        shares = r['kept_on_any'] + r['kept_holds'] + r['kept_background']
        assert shares == pytest.approx(1.0)  # every kept box is in exactly one class
        assert 0 <= r['kept_on_iou'] <= r['kept_on_inside_box'] <= 1  # IoU >= 0.5 implies inside its box
        assert max(r['kept_on_iou'], r['kept_on_inside']) <= r['kept_on_any'] <= 1
    # v1 scenes have no masks: the box rule; v2's masks: an object's pixels, fewer than its box's
    assert v1['inside_rule_masks'] == 0 and v1['kept_on_inside'] == v1['kept_on_inside_box']
    assert v2['inside_rule_masks'] == 1 and v2['kept_on_inside'] < v2['kept_on_inside_box']
    out = capsys.readouterr().out
    assert '| v2 |' in out and 'KNN oracle' in out
    assert premise.main(args) == 0  # resumes: nothing recomputed
    assert 'v2: done before' in capsys.readouterr().out
