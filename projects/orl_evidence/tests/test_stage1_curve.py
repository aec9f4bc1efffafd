"""``projects.orl_evidence.stage1_curve``: both arms train and are probed, the baselines match the runs' start,
a finished arm is not rerun."""
import json
import os.path as osp

import pytest
from mmengine.config import Config

from projects.orl_evidence import stage1_curve as curve


def test_curve_benchmark_small_run(tmp_path, monkeypatch):
    out = str(tmp_path / 'curve')
    argv = [
        '--num-images', '15', '--epochs', '1', '--crop-epochs', '1', '--view-size', '32', '--probe-interval', '1',
        '--out', out, '--cfg-options', 'optim_wrapper.optimizer.weight_decay=0.0002', 'train_dataloader.batch_size=8'
    ]
    assert curve.main(argv) == 0
    with open(osp.join(out, 'results.json')) as f:
        res = json.load(f)

    with open(osp.join(out, 'data', 'annotations', 'instances_train.json')) as f:
        train = json.load(f)
    sides = [min(round(a['bbox'][2]), round(a['bbox'][3])) for a in train['annotations']]
    assert res['object_crops'] == sum(s >= 8 for s in sides)  # the probe's own crop rule, no labels kept
    with open(osp.join(out, 'object_crops', 'annotations', 'crops.json')) as f:
        assert json.load(f)['annotations'] == []

    base = res['random_init']
    assert res['cfg_options'] == ['optim_wrapper.optimizer.weight_decay=0.0002', 'train_dataloader.batch_size=8']
    for arm in ('scenes', 'object-crops'):  # the recipe change reached both runs
        dumped = Config.fromfile(osp.join(out, arm, 'byol_resnet18_1xb32-coslr-30e_synthetic.py'))
        assert dumped.optim_wrapper.optimizer.weight_decay == 0.0002
    for arm in ('scenes', 'object-crops'):
        rec = res['arms'][arm]
        assert [s for s, _ in rec['object_probe']] == [0, rec['object_probe'][-1][0]]  # before and after epoch 1
        assert len(rec['view_retrieval']) == 2 and rec['loss']
        # The seeded initialisation the runs start from is the one the baselines probe.
        assert rec['object_probe'][0][1] == pytest.approx(base['object_probe'], abs=1e-4)
        assert rec['view_retrieval'][0][1] == pytest.approx(base['view_retrieval'], abs=1e-4)
        assert rec['view_rank'][0][1] == pytest.approx(base['view_rank'], rel=1e-3)
        assert len(rec['view_rank']) == 2 and all(r >= 1.0 for _, r in rec['view_rank'])
    # 12 training scenes make one batch of 8 (training drops a partial one), their ~50 object crops six: the
    # crop arm trained on the crops.
    assert res['arms']['object-crops']['object_probe'][-1][0] > res['arms']['scenes']['object_probe'][-1][0]
    assert 0.0 <= base['object_probe_bn_recalibrated'] <= 1.0

    # A second call reads the finished arms instead of training again.
    monkeypatch.setattr(curve.subprocess, 'run', lambda *a, **k: pytest.fail('an arm was rerun'))
    assert curve.main(argv) == 0
