"""Object kNN probe: the weighted vote, the crops it reads, and the score of a known feature map."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS, HOOKS

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.evaluation.object_probe import knn_classify, object_crops, object_knn_probe


def test_knn_vote_is_similarity_weighted():
    ref = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1])
    q = F.normalize(torch.tensor([[0.05, 1.0]]), dim=1)
    # All three vote. With a sharp temperature the one very close class-1 crop outweighs two far class-0 ones;
    # with a flat one it is a plain majority vote.
    assert knn_classify(ref, labels, q, 2, k=3, temperature=0.07).tolist() == [1]
    assert knn_classify(ref, labels, q, 2, k=3, temperature=1e6).tolist() == [0]
    assert knn_classify(ref, labels, q, 2, k=1).tolist() == [1]
    with pytest.raises(ValueError, match='no reference'):
        knn_classify(ref[:0], labels[:0], q, 2)


def _scenes(tmp_path, n=12):
    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, n, seed=3, img_size=(96, 96), workers=1)

    def ds(split):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return DATASETS.build(
                dict(
                    type='SceneImageDataset',
                    data_root=root,
                    ann_file=f'annotations/instances_{split}.json',
                    data_prefix=dict(img_path='images/'),
                    pipeline=[]))

    return root, ds('train'), ds('val')


def test_object_crops_follow_the_annotations(tmp_path):
    _, train, _ = _scenes(tmp_path)
    infos = [train.get_data_info(i) for i in range(len(train))]
    crops, labels = object_crops(infos, size=32, min_side=8)
    expect = np.concatenate([
        np.asarray(i['gt_labels'])[((i['gt_bboxes'][:, 2:] - i['gt_bboxes'][:, :2]).round() >= 8).all(1)] for i in infos
    ])
    assert crops.shape == (len(expect), 32, 32, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(labels, expect)
    few, few_labels = object_crops(infos, size=32, max_objects=5)
    assert len(few) == 5 and np.array_equal(few_labels, expect[:5])


def test_probe_scores_a_known_feature_map(colour_model):
    # Two colour classes: mean colour separates them perfectly; a model that sees only noise cannot.
    rng = np.random.default_rng(0)

    def crops(n, colour):
        return np.clip(rng.normal(colour, 10, (n, 8, 8, 3)), 0, 255).astype(np.uint8)

    ref = (np.concatenate([crops(10, (200, 30, 30)), crops(10, (30, 30, 200))]), np.repeat([0, 1], 10))
    qry = (np.concatenate([crops(5, (190, 40, 30)), crops(5, (40, 30, 190))]), np.repeat([0, 1], 5))
    model = colour_model.train()
    res = object_knn_probe(model, ref, qry, k=5)
    assert res['top1'] == 1.0 and res['chance'] == 0.5
    assert res['num_reference'] == 20 and res['num_query'] == 10
    assert model.training  # restored after the eval-mode forward
    swapped = (qry[0], 1 - qry[1])
    assert object_knn_probe(model, ref, swapped, k=5)['top1'] == 0.0
    with pytest.raises(ValueError, match='both splits'):
        object_knn_probe(model, ref, (qry[0][:0], qry[1][:0]))


def test_hook_without_annotations_warns_and_turns_off(tmp_path, colour_model):
    root, _, _ = _scenes(tmp_path, n=6)
    ann = osp.join(root, 'annotations', 'instances_train.json')
    with open(ann) as f:
        d = json.load(f)
    d['annotations'] = []
    with open(osp.join(root, 'annotations', 'empty.json'), 'w') as f:
        json.dump(d, f)
    cfg = dict(data_root=root, ann_file='annotations/empty.json', data_prefix=dict(img_path='images/'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = HOOKS.build(dict(type='ObjectProbeHook', reference=cfg, query=cfg))
    with pytest.raises(ValueError, match='empty.json'):
        hook._load(cfg)

    class _Runner:
        model = colour_model
        logger = MMLogger.get_instance('probe_test')
        epoch = 0
        max_epochs = 1
        train_loop = None

    hook.before_train(_Runner())  # warns and turns off instead of stopping the training
    assert 'empty.json' in hook.disabled_reason
    hook.after_train_epoch(_Runner())  # stays off, no error


def test_hook_warns_when_the_features_are_nan(tmp_path, diverged_model, hook_runner):
    root, _, _ = _scenes(tmp_path, n=6)
    split = dict(data_root=root, data_prefix=dict(img_path='images/'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = HOOKS.build(
            dict(
                type='ObjectProbeHook',
                reference=dict(split, ann_file='annotations/instances_train.json'),
                query=dict(split, ann_file='annotations/instances_val.json'),
                crop_size=16))
    runner = hook_runner(diverged_model)
    hook.before_train(runner)  # scores and goes on, with a warning instead of a silent number
    warnings = [m for level, m in runner.logger.records if level == 'warning']
    n = sum(len(c[0]) for c in hook._data)
    assert len(warnings) == 1 and f'{n} of {n} crop features are NaN/inf' in warnings[0]
    assert len(runner.scalars) == 1 and hook.disabled_reason is None


def test_probe_cli_scores_checkpoints(tmp_path, capsys):
    import runpy
    repo = ROOT
    tool = runpy.run_path(osp.join(repo, 'tools', 'analysis_tools', 'object_probe.py'))
    root, _, _ = _scenes(tmp_path)
    cfg = osp.join(repo, 'configs', 'byol', 'byol_resnet18_1xb32-coslr-30e_synthetic.py')
    # A stage-3-like checkpoint: a ResNet-18 under 'backbone.' (seed 5, so it differs from 'random' seed 0).
    from mmpretrain.models import ResNet
    torch.manual_seed(5)
    net = ResNet(depth=18, out_indices=(3, ))
    ckpt = str(tmp_path / 'ckpt.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in net.state_dict().items()}), ckpt)
    out = str(tmp_path / 'probe.json')
    assert tool['main']([cfg, 'random', ckpt, 'random', '--data-root', root, '--out', out]) == 0
    with open(out) as f:
        res = json.load(f)['results']
    assert [r['checkpoint'] for r in res] == ['random', ckpt, 'random']
    assert all(0.0 <= r['top1'] <= 1.0 and r['num_query'] > 0 for r in res)
    assert res[0]['top1'] == res[2]['top1']  # the seeded random init is reproducible
    assert all(r['num_nonfinite'] == 0 for r in res) and 'NaN/inf' not in capsys.readouterr().err

    # Broken BN statistics: every feature NaN; scored, recorded and warned about.
    state = {f'backbone.{k}': v.clone() for k, v in net.state_dict().items()}
    state['backbone.bn1.running_var'][:] = float('nan')
    nan_ckpt = str(tmp_path / 'nan.pth')
    torch.save(dict(state_dict=state), nan_ckpt)
    assert tool['main']([cfg, nan_ckpt, '--data-root', root, '--out', out]) == 0
    with open(out) as f:
        nan_res = json.load(f)['results'][0]
    n = nan_res['num_query'] + nan_res['num_reference']
    assert nan_res['num_nonfinite'] == n and f'{n} of {n} crop features are NaN/inf' in capsys.readouterr().err

    bad = str(tmp_path / 'bad.pth')
    torch.save(dict(state_dict={'backbone.conv1.weight': net.conv1.weight.detach()}), bad)
    with pytest.raises(ValueError, match='bad.pth'):  # orl_plugin.utils.error_policy.InputError
        tool['main']([cfg, bad, '--data-root', root])
