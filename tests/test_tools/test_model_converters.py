"""Checkpoint tools: official ORL import, detectron2 export, publishing (small checkpoints made here)."""
import hashlib
import importlib.util
import os.path as osp
import pickle
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT
from mmengine.registry import DefaultScope

from orl_plugin.utils.checkpoint import (CheckpointFormatError, DroppedObject, extract_backbone, load_checkpoint_file,
                                         resnet_depth)
from orl_plugin.utils.error_policy import run_cli


def _load_tool(name):
    """Import tools/model_converters/<name>.py as a module (tools/ is not a package)."""
    path = osp.join(ROOT, 'tools', 'model_converters', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'orl_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli_error(tool, argv, capsys) -> str:
    """Run a tool's command line; it must fail with one line on stderr and exit status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count('\n') == 1 and err.startswith('error: '), err
    return err


convert_tool = _load_tool('convert_official_orl')
export_tool = _load_tool('export_detectron2')
publish_tool = _load_tool('publish_model')


def _randomize(sd, seed):
    """Random values for every tensor (BN weights/stats too, so equality is never accidental)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for k, v in sd.items():
        if v.is_floating_point():
            out[k] = torch.rand(v.shape, generator=g) + 0.1
        else:
            out[k] = torch.randint(0, 100, v.shape, generator=g, dtype=v.dtype)
    return out


def _resnet_sd(depth, seed, width=64):
    """A random ResNet state_dict; ``width`` < 64 keeps the key names with fewer channels (fast)."""
    from mmpretrain.models import ResNet
    net = ResNet(depth=depth, base_channels=width, stem_channels=width)
    return _randomize(net.state_dict(), seed)


@pytest.fixture(scope='module')
def orl_state():
    """This project's ORL model (ResNet-18, the CPU stage-3 config) and a random state_dict for it."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py'))

    def build():
        with DefaultScope.overwrite_default_scope('mmpretrain'):  # whatever scope ran last
            return MODELS.build(cfg.model)

    return build, _randomize(build().state_dict(), 11)


# this project's prefixes -> the official OpenSelfSup ORL names of the same modules
_OFFICIAL_NAMES = (('backbone.', ('backbone.', 'online_net.0.')), ('neck.', ('neck.', 'online_net.1.')),
                   ('target_net.module.0.', ('target_net.0.', )), ('target_net.module.1.', ('target_net.1.', )),
                   ('head.', ('global_head.', )), ('intra_head.', ('local_intra_head.', )), ('inter_head.',
                                                                                             ('local_inter_head.', )))


def _to_official(sd, aliases=('backbone.', 'online_net.0.')):
    """The checkpoint the official code would save for these weights (backbone under ``aliases``)."""
    out = OrderedDict()
    for ours, names in _OFFICIAL_NAMES:
        if ours == 'backbone.':
            names = aliases
        for name in names:
            out.update((name + k[len(ours):], v) for k, v in sd.items() if k.startswith(ours))
    meta = dict(epoch=800, iter=1000, mmcv_version='0.4.3', time='Mon Jun 21 2021')
    optimizer = dict(state={}, param_groups=[dict(lr=0.4, momentum=0.9, params=[0, 1])])
    return dict(meta=meta, state_dict=out, optimizer=optimizer)


def _part(sd, prefix):
    return OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))


def test_convert_official_orl_layouts(tmp_path, capsys, orl_state):
    build, ours = orl_state
    src = str(tmp_path / 'orl_official.pth')
    official = _to_official(ours)
    torch.save(official, src)
    out, bb_out, bare_out = (str(tmp_path / n) for n in ('orl.pth', 'bb.pth', 'bare.pth'))
    assert convert_tool.main([src, out, '--backbone-out', bb_out]) == 0
    assert 'ResNet-18 from "backbone."' in capsys.readouterr().out
    assert convert_tool.main([src, '--backbone-out', bare_out, '--bare-keys']) == 0

    # the converted file loads strictly into this project's ORL model, every tensor in place
    conv = torch.load(out, weights_only=True)['state_dict']
    model = build()
    model.load_state_dict(conv, strict=True)
    for k, v in model.state_dict().items():
        if k != 'target_net.steps':
            assert torch.equal(v, ours[k]), k
    assert not any(k.startswith(('online_net.', 'target_net.0.', 'global_head.')) for k in conv)

    backbone = _part(ours, 'backbone.')
    bb = torch.load(bb_out, weights_only=True)['state_dict']
    assert set(bb) == {'backbone.' + k for k in backbone}
    bare = torch.load(bare_out, weights_only=True)['state_dict']
    from mmdet.models.backbones import ResNet
    det_backbone = ResNet(depth=18)
    det_backbone.load_state_dict(bare, strict=True)  # goes straight into mmdet's ResNet
    for k, v in det_backbone.state_dict().items():
        assert torch.equal(v, backbone[k]), k


@pytest.mark.parametrize('layout', ['online_net_only', 'bare'])
def test_convert_other_backbone_layouts(tmp_path, layout, orl_state):
    if layout == 'online_net_only':
        ckpt = _to_official(orl_state[1], aliases=('online_net.0.', ))
        backbone = _part(orl_state[1], 'backbone.')
    else:
        backbone = _resnet_sd(18, 5)
        ckpt = dict(state_dict=backbone)
    src = str(tmp_path / 'in.pth')
    torch.save(ckpt, src)
    summary = convert_tool.convert(src, backbone_out=str(tmp_path / 'bb.pth'))
    assert summary['depth'] == 18
    assert summary['backbone_prefix'] == ('online_net.0.' if layout == 'online_net_only' else '<bare>')
    bb = torch.load(str(tmp_path / 'bb.pth'), weights_only=True)['state_dict']
    assert all(torch.equal(bb['backbone.' + k], v) for k, v in backbone.items())


def test_convert_errors(tmp_path, capsys, orl_state):
    # no backbone at all: the message says what was expected and what was found
    moco = OrderedDict(('encoder_q.' + k, v) for k, v in _resnet_sd(18, 0, width=8).items())
    src = str(tmp_path / 'moco.pth')
    torch.save(dict(state_dict=moco), src)
    err = _cli_error(convert_tool, [src, str(tmp_path / 'out.pth')], capsys)
    assert "no backbone weights: expected keys starting with 'backbone.' or 'online_net.0.'" in err
    assert 'encoder_q.' in err and 'found prefixes' in err
    assert not osp.exists(tmp_path / 'out.pth')

    # the two aliases of the online backbone disagree
    ckpt = _to_official(orl_state[1])
    ckpt['state_dict']['online_net.0.conv1.weight'] = ckpt['state_dict']['online_net.0.conv1.weight'] + 1
    src = str(tmp_path / 'bad_alias.pth')
    torch.save(ckpt, src)
    with pytest.raises(
            CheckpointFormatError,
            match=r"'backbone.conv1.weight' and "
            r"'online_net.0.conv1.weight' should be the same tensor"):
        convert_tool.convert(src, str(tmp_path / 'o.pth'))

    # a backbone that is not a standard ResNet (a block missing)
    sd = OrderedDict((k, v) for k, v in _resnet_sd(18, 0, width=8).items() if not k.startswith('layer3.1.'))
    src = str(tmp_path / 'trunc.pth')
    torch.save(dict(state_dict=OrderedDict(('backbone.' + k, v) for k, v in sd.items())), src)
    with pytest.raises(
            CheckpointFormatError, match=r'not a standard ResNet: basic blocks per stage '
            r'\[2, 2, 1, 2\]'):
        convert_tool.convert(src, str(tmp_path / 'o.pth'))

    # a wrong tensor shape is caught by the strict load into mmdet's ResNet
    sd = OrderedDict(('backbone.' + k, v) for k, v in _resnet_sd(18, 0).items())
    sd['backbone.layer2.0.conv1.weight'] = torch.zeros(128, 64, 1, 1)
    src = str(tmp_path / 'shape.pth')
    torch.save(dict(state_dict=sd), src)
    with pytest.raises(
            CheckpointFormatError,
            match=r'does not match ResNet-18: layer2.0.conv1.weight '
            r'has shape \(128, 64, 1, 1\), expected \(128, 64, 3, 3\)'):
        convert_tool.convert(src, str(tmp_path / 'o.pth'))

    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        load_checkpoint_file(str(tmp_path / 'missing.pth'))


class _Evil:
    """A class no checkpoint loader may instantiate."""

    def __reduce__(self):
        return (print, ('executed', ))


def test_safe_loading(tmp_path):
    # numpy values inside meta: allowed through the narrow numpy allow-list
    sd = OrderedDict(('backbone.' + k, v) for k, v in _resnet_sd(18, 0, width=8).items())
    src = str(tmp_path / 'np.pth')
    torch.save(dict(meta=dict(best=np.float64(0.5), hist=np.arange(3)), state_dict=sd), src)
    ckpt = load_checkpoint_file(src)
    assert ckpt['meta']['best'] == 0.5 and list(ckpt['meta']['hist']) == [0, 1, 2]
    # ... and what the tools write from it is plain Python (loads without the allow-list)
    published = torch.load(publish_tool.publish(src, str(tmp_path / 'pub.pth')), weights_only=True)
    converted = str(tmp_path / 'conv.pth')
    convert_tool.convert(src, converted, verify=False)  # a narrow ResNet (width 8)
    for meta in (published['meta'], torch.load(converted, weights_only=True)['meta']['source_meta']):
        assert type(meta['best']) is float
    assert published['meta']['hist'] == [0, 1, 2]

    # anything else is refused, and nothing runs
    src = str(tmp_path / 'evil.pth')
    torch.save(dict(meta=dict(x=_Evil()), state_dict=sd), src)
    with pytest.raises(CheckpointFormatError, match='cannot be loaded with weights_only=True'):
        load_checkpoint_file(src)


def _runner_checkpoint(tmp_path):
    """A real mmengine training checkpoint (optimizer, param_schedulers, message_hub with
    HistoryBuffers), from a 2-iteration run of a tiny model with a ResNet-18 backbone."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from mmpretrain.models import ResNet

    class TinyNet(BaseModel):

        def __init__(self):
            super().__init__()
            self.backbone = ResNet(depth=18, base_channels=8, stem_channels=8)
            self.head = torch.nn.Linear(64, 2)

        def forward(self, inputs, labels=None, mode='tensor'):
            feats = self.backbone(inputs)[-1].mean((2, 3))  # default_collate stacked the batch
            logits = self.head(feats)
            if mode == 'loss':
                return dict(loss=torch.nn.functional.cross_entropy(logits, labels))
            return logits

    data = [dict(inputs=torch.rand(3, 32, 32), labels=torch.tensor(i % 2)) for i in range(4)]
    runner = Runner(
        model=TinyNet(),
        work_dir=str(tmp_path / 'run'),
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=2, val_interval=100),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmengine',
        log_level='WARNING')
    runner.train()
    return osp.join(str(tmp_path / 'run'), 'iter_2.pth'), runner.model.state_dict()


def test_publish_and_export_training_checkpoint(tmp_path):
    path, model_sd = _runner_checkpoint(tmp_path)
    ckpt = load_checkpoint_file(path)
    assert {'optimizer', 'param_schedulers', 'message_hub'} <= set(ckpt)

    final = publish_tool.publish(path, str(tmp_path / 'tiny_r18.pth'))
    m = re.fullmatch(r'tiny_r18-([0-9a-f]{8})\.pth', osp.basename(final))
    assert m, final
    with open(final, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest()[:8] == m.group(1)
    pub = torch.load(final, weights_only=True)
    assert not {'optimizer', 'param_schedulers', 'message_hub'} & set(pub)
    assert 'orl_plugin_version' in pub['meta']
    assert pub['state_dict'].keys() == model_sd.keys()
    assert all(torch.equal(pub['state_dict'][k], v) for k, v in model_sd.items())

    assert publish_tool.main([path, str(tmp_path / 'bb.pth'), '--backbone-only', '--date']) == 0
    (bb_file, ) = [p for p in tmp_path.iterdir() if p.name.startswith('bb_')]
    assert re.fullmatch(r'bb_\d{8}-[0-9a-f]{8}\.pth', bb_file.name)
    bb = torch.load(str(bb_file), weights_only=True)['state_dict']
    assert bb and all(k.startswith('backbone.') for k in bb)

    # the detectron2 export reads the same training checkpoint
    out = str(tmp_path / 'r18.pkl')
    assert export_tool.main([path, out]) == 0
    with open(out, 'rb') as f:
        d2 = pickle.load(f)
    assert torch.equal(torch.from_numpy(d2['model']['res5.1.conv2.weight']), model_sd['backbone.layer4.1.conv2.weight'])


def test_publish_unpatched_training_checkpoint(tmp_path):
    """A checkpoint from a run without orl_plugin.utils.stack_fixes pickles HistoryBuffer objects (with
    ``getattr`` calls): a weights-only load refuses it; the tools read its weights with the
    runner state as inert placeholders, and publishing drops that state."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(0.5)
    sd = OrderedDict(('backbone.' + k, v) for k, v in _resnet_sd(18, 3, width=8).items())
    src = str(tmp_path / 'epoch_1.pth')
    torch.save(
        dict(
            meta=dict(epoch=1),
            state_dict=sd,
            message_hub=dict(log_scalars={'train/loss': buf}, runtime_info={'iter': 3})), src)
    with pytest.raises(pickle.UnpicklingError, match='getattr|HistoryBuffer'):
        torch.load(src, weights_only=True)
    ckpt = load_checkpoint_file(src)
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'], DroppedObject)
    assert all(torch.equal(ckpt['state_dict'][k], v) for k, v in sd.items())

    final = publish_tool.publish(src, str(tmp_path / 'pub.pth'))
    pub = torch.load(final, weights_only=True)  # no runner state left: a plain weights-only load
    assert 'message_hub' not in pub and pub['state_dict'].keys() == sd.keys()


def test_publish_prints_the_metafile_entry(tmp_path, capsys):
    """The entry of the config that trained the checkpoint, with Weights and Results filled in;
    pasted into a metafile, it is what mim's model index reads."""
    from modelindex.load_model_index import load
    sd = OrderedDict(('backbone.' + k, v) for k, v in _resnet_sd(18, 0, width=8).items())
    src = str(tmp_path / 'epoch_30.pth')
    torch.save(
        dict(
            state_dict=sd,
            meta=dict(epoch=30, experiment_name='orl_resnet18_1xb16-coslr-30e_synthetic_20261202_010222')), src)
    assert publish_tool.main([
        src,
        str(tmp_path / 'orl_r18.pth'), '--url-prefix', 'https://example.org/orl/', '--task', 'Object Detection',
        '--dataset', 'Synthetic scenes', '--metric', 'box AP=0.031', '--metric', 'box AP50=0.094'
    ]) == 0
    out = capsys.readouterr().out
    final = re.search(r'published: (\S+)', out).group(1)
    header, text = out.split(
        'metafile entry (paste it over the entry named '
        'orl_resnet18_1xb16-coslr-30e_synthetic in ', 1)
    metafile, text = text.split('):\n', 1)
    assert metafile == osp.join(ROOT, 'configs', 'orl', 'metafile.yml')
    (entry, ) = yaml.safe_load(text)
    assert entry['Name'] == 'orl_resnet18_1xb16-coslr-30e_synthetic' and entry['In Collection'] == 'ORL'
    assert osp.isfile(osp.join(ROOT, entry['Config']))
    assert entry['Weights'] == 'https://example.org/orl/' + osp.basename(final)
    assert entry['Results'] == [
        dict(Task='Object Detection', Dataset='Synthetic scenes', Metrics={'box AP': 0.031, 'box AP50': 0.094})
    ]

    (tmp_path / 'configs').mkdir()
    (tmp_path / 'configs' / 'metafile.yml').write_text('Collections:\n  - Name: ORL\nModels:\n' + text)
    (tmp_path / 'model-index.yml').write_text('Import:\n  - configs/metafile.yml\n')
    (model, ) = load(str(tmp_path / 'model-index.yml')).models
    assert model.weights == entry['Weights'] and model.results[0].metrics['box AP'] == 0.031

    # a model the metafiles do not list, and a metric without its task
    with pytest.raises(ValueError, match="lists a model named 'nope'"):
        publish_tool.main([src, str(tmp_path / 'x.pth'), '--config', 'nope'])
    with pytest.raises(ValueError, match='--metric needs --task and --dataset'):
        publish_tool.main([src, str(tmp_path / 'x.pth'), '--metric', 'box AP=1'])
    assert not list(tmp_path.glob('x*.pth'))  # nothing published


def _expected_d2_names(depth):
    """detectron2's ResNet parameter/buffer names (stem, res2..res5), written out independently."""
    block, stages = {18: ('basic', (2, 2, 2, 2)), 50: ('bottleneck', (3, 4, 6, 3))}[depth]
    convs = 2 if block == 'basic' else 3
    bn = ('weight', 'bias', 'running_mean', 'running_var')
    names = {'stem.conv1.weight'} | {f'stem.conv1.norm.{p}' for p in bn}
    for s, n in enumerate(stages):
        for b in range(n):
            pre = f'res{s + 2}.{b}'
            for c in range(1, convs + 1):
                names.add(f'{pre}.conv{c}.weight')
                names |= {f'{pre}.conv{c}.norm.{p}' for p in bn}
            if b == 0 and (s > 0 or block == 'bottleneck'):
                names.add(f'{pre}.shortcut.weight')
                names |= {f'{pre}.shortcut.norm.{p}' for p in bn}
    return names


@pytest.mark.parametrize('depth', [18, 50])
def test_export_detectron2(tmp_path, depth):
    backbone = _resnet_sd(depth, 7, width=8)
    sd = OrderedDict(('backbone.' + k, v) for k, v in backbone.items())
    target = _resnet_sd(depth, 8, width=8)
    sd.update(('target_net.module.0.' + k, v) for k, v in target.items())
    sd['neck.fc0.weight'] = torch.rand(4, 4)
    src = str(tmp_path / 'ckpt.pth')
    torch.save(dict(state_dict=sd), src)

    out = str(tmp_path / 'out.pkl')
    summary = export_tool.export(src, out)
    assert summary['depth'] == depth and summary['prefix'] == 'backbone.'
    with open(out, 'rb') as f:
        obj = pickle.load(f)
    assert obj['__author__'] == 'orl_plugin' and obj['matching_heuristics'] is True
    model = obj['model']
    assert set(model) == _expected_d2_names(depth)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in model.values())
    np.testing.assert_array_equal(model['stem.conv1.norm.running_var'], backbone['bn1.running_var'].numpy())
    np.testing.assert_array_equal(model['res3.0.shortcut.norm.bias'], backbone['layer2.0.downsample.1.bias'].numpy())
    np.testing.assert_array_equal(model['res4.1.conv2.weight'], backbone['layer3.1.conv2.weight'].numpy())

    # the EMA target's backbone, by prefix
    export_tool.export(src, out, prefix='target_net.module.0.')
    with open(out, 'rb') as f:
        model = pickle.load(f)['model']
    np.testing.assert_array_equal(model['res5.0.conv1.weight'], target['layer4.0.conv1.weight'].numpy())


def test_export_detectron2_errors(tmp_path, capsys):
    sd = OrderedDict(('backbone.' + k, v) for k, v in _resnet_sd(18, 0, width=8).items())
    src = str(tmp_path / 'ckpt.pth')
    torch.save(dict(state_dict=sd), src)
    err = _cli_error(export_tool, [src, str(tmp_path / 'o.pkl'), '--prefix', 'target_net.module.0.'], capsys)
    assert "no keys start with 'target_net.module.0.'" in err and 'backbone.' in err
    assert not osp.exists(tmp_path / 'o.pkl')

    torch.save(dict(state_dict={'head.fc.weight': torch.rand(2, 2)}), src)
    assert 'no backbone weights' in _cli_error(export_tool, [src, str(tmp_path / 'o.pkl')], capsys)


def test_resnet_depth_and_extract():
    assert resnet_depth(_resnet_sd(50, 0, width=8)) == 50
    assert resnet_depth(_resnet_sd(101, 0, width=8)) == 101
    assert resnet_depth(_resnet_sd(18, 0, width=8)) == 18
    prefix, part = extract_backbone(
        {'online_net.0.conv1.weight': torch.zeros(1), 'online_net.0.layer1.0.conv1.weight': torch.zeros(1)})
    assert prefix == 'online_net.0.' and set(part) == {'conv1.weight', 'layer1.0.conv1.weight'}
