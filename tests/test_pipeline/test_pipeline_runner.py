"""The pipeline runner: stage graph, options, skip-if-done / --from / crash resume (fast, with a fake
launcher), and one real end-to-end run of every stage on a tiny synthetic set."""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from orl_plugin import pipeline as pl
from orl_plugin.pipeline import Pipeline, PipelineError, PipelineOptions

ROOT = pl.repo_root()


# ----------------------------------------------------------------------------- graph and options
def test_stage_names_and_descendants():
    assert pl.resolve_stage('2a') == 'knn'
    assert pl.resolve_stage('2B') == 'selective_search'
    assert pl.resolve_stage('ft') == 'finetune'
    with pytest.raises(PipelineError, match='unknown stage'):
        pl.resolve_stage('stage9')
    assert pl.descendants('stage1') == ['stage1', 'knn', 'correspondence', 'stage3', 'finetune']
    assert pl.descendants('selective_search') == ['selective_search', 'correspondence', 'stage3', 'finetune']
    assert pl.descendants('stage3') == ['stage3', 'finetune']


def test_parse_stage_options():
    opts = pl.parse_stage_options(['a.b=1', '2a:test_dataloader.batch_size=8', 'stage3:x=http://h:1'])
    assert opts['*'] == ['a.b=1']
    assert opts['knn'] == ['test_dataloader.batch_size=8']
    assert opts['stage3'] == ['x=http://h:1']
    with pytest.raises(PipelineError, match='key=value'):
        pl.parse_stage_options(['novalue'])


@pytest.mark.parametrize('preset', sorted(pl.PRESETS))
def test_presets_resolve_to_existing_configs(preset):
    label, configs = pl.resolve_configs(preset)
    assert label == preset
    for spec in pl.STAGES:
        assert spec.name in configs, f'{preset}: no config for {spec.name}'
        assert osp.isfile(configs[spec.name])


def test_config_dir_and_missing_stage(tmp_path):
    for spec in pl.STAGES[:4]:
        (tmp_path / spec.config_file).write_text('x = 1\n')
    with pytest.raises(PipelineError, match="has no stage3.py"):
        Pipeline(PipelineOptions(str(tmp_path), work_dir=str(tmp_path / 'w')))
    with pytest.raises(PipelineError, match='neither a preset'):
        Pipeline(PipelineOptions(str(tmp_path / 'nope')))


def test_commands_for_each_launcher(tmp_path):
    """Single process, torchrun and slurm commands go through the user-facing tools."""
    base = dict(preset_or_dir='synthetic', work_dir=str(tmp_path), finetune=True, dry_run=True)
    p = Pipeline(PipelineOptions(**base))
    p.run()
    tools = osp.join(ROOT, 'tools')
    ckpt, wired = p._inputs('knn')
    cmd = p.build_command('knn', ckpt, p._options('knn', wired), resume=False)
    assert cmd[:4] == [sys.executable, osp.join(tools, 'test.py'), p.configs['knn'], ckpt]
    assert f'test_evaluator.out_file={tmp_path}/knn/knn.orlstore' in cmd
    ckpt, wired = p._inputs('correspondence')
    opts = p._options('correspondence', wired)
    assert f'test_cfg.knn_file={tmp_path}/knn/knn.orlstore' in opts
    assert (f'test_dataloader.dataset.proposal_file={tmp_path}/selective_search/selective_search.orlstore' in opts)
    ckpt, wired = p._inputs('finetune')
    cmd = p.build_command('finetune', ckpt, [], resume=True)
    assert osp.join(tools, 'det_train.py') in cmd and cmd[cmd.index('--pretrained') + 1] == ckpt
    assert '--resume' in cmd

    p = Pipeline(PipelineOptions(**base, gpus=4))
    cmd = p.build_command('selective_search', None, [], resume=False)
    assert cmd[:5] == ['bash', osp.join(tools, 'dist_test.sh'), p.configs['selective_search'], 'none', '4']
    cmd = p.build_command('stage1', None, ['a=1'], resume=False)
    assert cmd[:4] == ['bash', osp.join(tools, 'dist_train.sh'), p.configs['stage1'], '4']
    assert cmd[-2:] == ['--cfg-options', 'a=1']

    p = Pipeline(PipelineOptions(**base, gpus=16, launcher='slurm', partition='gpu'))
    cmd = p.build_command('stage3', None, [], resume=False)
    assert cmd[:7] == [
        'bash',
        osp.join(tools, 'slurm_train.sh'), 'gpu', 'orl-stage3', p.configs['stage3'],
        str(tmp_path / 'stage3')
    ][:7]
    assert '--work-dir' not in cmd
    env = p._launch_env()
    assert env['GPUS'] == '16' and env['GPUS_PER_NODE'] == '8'
    cmd = p.build_command('knn', '/c.pth', [], resume=False)
    assert cmd[:6] == ['bash', osp.join(tools, 'slurm_test.sh'), 'gpu', 'orl-knn', p.configs['knn'], '/c.pth']


def test_stage_processes_have_the_repository_on_pythonpath(tmp_path, monkeypatch):
    """OpenMMLab's launcher convention, for the single-process launch too: a config's custom_imports may name
    the repository's own modules (``projects.*``) in every stage process."""
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(['/x', ROOT, '']))
    p = Pipeline(PipelineOptions('synthetic', work_dir=str(tmp_path), dry_run=True))
    assert p._launch_env()['PYTHONPATH'].split(os.pathsep) == [ROOT, '/x']
    assert pl.with_pythonpath('/r', {}) == {'PYTHONPATH': '/r'}


def test_data_root_options():
    cfg = osp.join(ROOT, pl.PRESETS['synthetic']['knn'])
    items = pl.data_root_options(cfg, '/elsewhere/scenes')
    assert 'test_dataloader.dataset.data_root=/elsewhere/scenes/' in items
    assert 'test_evaluator.out_file=/elsewhere/scenes/orl/knn.orlstore' in items


def test_run_metrics_keep_every_probe(tmp_path):
    # Two hooks log their own scalar lines at the same step; both must reach the summary, each at its latest value.
    log_dir = tmp_path / '20260101_000000'
    (log_dir / 'vis_data').mkdir(parents=True)
    lines = [
        dict(lr=0.1, loss=3.0, step=1),
        dict(**{'probe/object_knn_top1': 0.5}, step=0),
        dict(**{'probe/view_top1': 0.1}, step=0),
        dict(lr=0.05, loss=2.0, step=2),
        dict(**{'probe/object_knn_top1': 0.6}, step=2),
        dict(**{'probe/view_top1': 0.2}, step=2)
    ]
    (log_dir / 'vis_data' / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in lines))
    assert pl.read_run_metrics(
        str(log_dir)) == {'train/loss': 2.0, 'val/probe/object_knn_top1': 0.6, 'val/probe/view_top1': 0.2}


def test_schedule_options():
    c = pl.resolve_configs('synthetic')[1]
    assert pl.schedule_options(
        c['stage1'], 12) == ['train_cfg.max_epochs=12', 'param_scheduler.1.end=12', 'param_scheduler.1.T_max=11']
    # one epoch: the run ends inside the warm-up; the cosine part is never reached
    assert pl.schedule_options(c['stage1'], 1) == ['train_cfg.max_epochs=1']
    ft = pl.schedule_options(c['finetune'], 100)
    assert 'train_cfg.max_iters=100' in ft and 'train_cfg.val_interval=100' in ft
    ft_cfg = pl.load_config(c['finetune'])
    old = ft_cfg['param_scheduler'][1]['milestones']
    old_iters = ft_cfg['train_cfg']['max_iters']
    assert f'param_scheduler.1.milestones=[{round(old[0] * 100 / old_iters)}]' in ft
    with pytest.raises(PipelineError, match='mining stage'):
        Pipeline(PipelineOptions('synthetic', schedule={'2a': 3}))


# ----------------------------------------------------------------------------- skip / --from / resume
class FakeLaunch:
    """Stands in for the subprocess: writes what the stage's tool would write."""

    def __init__(self, fail_on=None):
        self.ran = []
        self.fail_on = fail_on

    def __call__(self, pipe, cmd, log_path):
        stage = osp.basename(osp.dirname(log_path))
        self.ran.append(stage)
        if stage == self.fail_on:
            return 3
        wd = pipe.stage_dir(stage)
        spec = pl.STAGE_BY_NAME[stage]
        ts = osp.join(wd, '20260101_000000')
        os.makedirs(osp.join(ts, 'vis_data'), exist_ok=True)
        if spec.entry == 'test':
            out = cmd[cmd.index('--cfg-options') + 1:]
            store = [o.split('=', 1)[1] for o in out if o.startswith(pl.STORE_OUT_KEY + '=')][-1]
            os.makedirs(store, exist_ok=True)
            with open(osp.join(ts, '20260101_000000.json'), 'w') as f:
                f.write('{"%s/score": 0.5}' % stage)
        else:
            torch.save({'state_dict': {}}, osp.join(wd, 'epoch_1.pth'))
            with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(wd, 'epoch_1.pth'))
            with open(osp.join(ts, 'vis_data', 'scalars.json'), 'w') as f:
                f.write('{"lr": 0.1, "loss": 1.5, "step": 1}\n{"coco/bbox_mAP": 0.25, "step": 1}\n')
        return 0


def _fake_pipeline(monkeypatch, launch, work_dir, **kw):
    monkeypatch.setattr(Pipeline, '_run_command', lambda self, cmd, log: launch(self, cmd, log))
    return Pipeline(PipelineOptions('synthetic', work_dir=str(work_dir), finetune=True, quiet=True, **kw))


def test_skip_from_and_resume_logic(tmp_path, monkeypatch):
    order = ['stage1', 'knn', 'selective_search', 'correspondence', 'stage3', 'finetune']
    launch = FakeLaunch(fail_on='correspondence')
    with pytest.raises(PipelineError, match='stage correspondence failed'):
        _fake_pipeline(monkeypatch, launch, tmp_path).run()
    assert launch.ran == order[:4]

    launch = FakeLaunch()  # crash resume: only the failed stage and what follows run
    s = _fake_pipeline(monkeypatch, launch, tmp_path).run()
    assert launch.ran == order[3:]
    assert s['stages']['knn']['skipped'] and not s['stages']['correspondence']['skipped']
    assert s['stages']['knn']['metrics'] == {'knn/score': 0.5}
    assert s['stages']['finetune']['metrics'] == {'train/loss': 1.5, 'val/coco/bbox_mAP': 0.25}
    assert osp.isfile(tmp_path / 'pipeline_summary.json')

    launch = FakeLaunch()  # everything done
    _fake_pipeline(monkeypatch, launch, tmp_path).run()
    assert launch.ran == []

    launch = FakeLaunch()  # --from 2b: selective search and its consumers only
    _fake_pipeline(monkeypatch, launch, tmp_path, from_stage='2b').run()
    assert launch.ran == ['selective_search', 'correspondence', 'stage3', 'finetune']

    launch = FakeLaunch()  # a changed option makes that stage and its consumers stale
    _fake_pipeline(monkeypatch, launch, tmp_path, cfg_options=['stage3:train_cfg.max_epochs=2']).run()
    assert launch.ran == ['stage3', 'finetune']

    launch = FakeLaunch()  # --use: an output made elsewhere stands in for the stage
    other = tmp_path / 'official_ss.json'
    other.write_text('{"bbox": []}')
    s = _fake_pipeline(
        monkeypatch, launch, tmp_path, use={'2b': str(other)}, cfg_options=['stage3:train_cfg.max_epochs=2']).run()
    assert launch.ran == ['correspondence', 'stage3', 'finetune']
    assert s['stages']['selective_search']['provided']
    assert s['stages']['selective_search']['outputs'] == {'store': str(other)}

    launch = FakeLaunch()  # back to the pipeline's own selective search: its consumers rerun
    _fake_pipeline(monkeypatch, launch, tmp_path, cfg_options=['stage3:train_cfg.max_epochs=2']).run()
    assert launch.ran == ['correspondence', 'stage3', 'finetune']

    launch = FakeLaunch()  # a lost output reruns its stage (and, new run id, its consumers)
    import shutil
    shutil.rmtree(tmp_path / 'knn' / 'knn.orlstore')
    _fake_pipeline(monkeypatch, launch, tmp_path, cfg_options=['stage3:train_cfg.max_epochs=2']).run()
    assert launch.ran == ['knn', 'correspondence', 'stage3', 'finetune']


# ----------------------------------------------------------------------------- real end to end
TINY_SCHEDULE = {'stage1': 1, 'stage3': 1, 'ft': 2}
TINY = [
    # every stage that has these keys: no worker processes
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'stage1:train_dataloader.batch_size=4',
    '2c:test_dataloader.batch_size=8',
    'stage3:train_dataloader.batch_size=4',
    'ft:train_dataloader.batch_size=2',
]


def _backbone_keys(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    return [k for k in ckpt['state_dict'] if k.startswith('backbone.')]


@pytest.mark.timeout(600)
def test_pipeline_end_to_end(tmp_path, monkeypatch):
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
    from orl_plugin.store import MiningStore

    data = tmp_path / 'scenes'
    make_synthetic_scenes(str(data), num_images=15, seed=0, img_size=(128, 128), workers=1)
    num_train = 12  # val = the last 20%
    monkeypatch.chdir(ROOT)
    opts = dict(
        preset_or_dir='synthetic',
        work_dir=str(tmp_path / 'run'),
        finetune=True,
        data_root=str(data),
        schedule=TINY_SCHEDULE,
        cfg_options=TINY,
        quiet=True)
    summary = Pipeline(PipelineOptions(**opts)).run()
    st = summary['stages']
    assert list(st) == ['stage1', 'knn', 'selective_search', 'correspondence', 'stage3', 'finetune']
    assert not any(r['skipped'] for r in st.values())

    for s in ('stage1', 'stage3', 'finetune'):
        assert osp.isfile(st[s]['outputs']['checkpoint'])
    assert _backbone_keys(st['stage1']['outputs']['checkpoint'])
    assert _backbone_keys(st['stage3']['outputs']['checkpoint'])

    knn = MiningStore.open(st['knn']['outputs']['store'])
    assert knn.kind == 'knn' and knn.num_images == num_train
    for i in range(num_train):
        nb = knn.knn(i)
        assert len(nb) == 10 and i not in nb and ((0 <= nb) & (nb < num_train)).all()
    ss = MiningStore.open(st['selective_search']['outputs']['store'])
    assert ss.kind == 'selective_search' and ss.num_images == num_train
    assert all(ss.boxes(i).shape[1:] == (4, ) and ss.num_boxes(i) >= 1 for i in range(num_train))
    corr = MiningStore.open(st['correspondence']['outputs']['store'])
    assert corr.kind == 'correspondence' and corr.num_images == num_train
    np.testing.assert_array_equal(
        np.stack([corr.knn(i) for i in range(num_train)]), np.stack([knn.knn(i) for i in range(num_train)]))
    pairs = corr.pairs(0, 0)
    assert pairs.ndim == 2 and pairs.shape[1] == 8 and len(pairs) >= 1

    # each evaluator's figures came back through the runner's json logs
    assert 'knn/category_precision@10' in st['knn']['metrics']
    assert 'selective_search/recall@0.5_raw' in st['selective_search']['metrics']
    assert 'correspondence/pair_precision' in st['correspondence']['metrics']
    assert any(k.endswith('bbox_mAP') for k in st['finetune']['metrics'])
    for r in st.values():
        assert osp.isfile(r['log'])

    # second run: every stage skipped, no process started
    def no_launch(self, cmd, log):
        raise AssertionError(f'launched {cmd}')

    with monkeypatch.context() as m:
        m.setattr(Pipeline, '_run_command', no_launch)
        again = Pipeline(PipelineOptions(**opts)).run()
    assert all(r['skipped'] for r in again['stages'].values())

    # --from 2a (--to 2a: one process, to keep the test short) reruns the KNN step only
    again = Pipeline(PipelineOptions(**opts, from_stage='2a', to_stage='2a')).run()['stages']
    assert [s for s, r in again.items() if not r['skipped']] == ['knn']
    assert again['knn']['run_id'] != st['knn']['run_id']
    assert again['stage1']['run_id'] == st['stage1']['run_id']
    assert MiningStore.open(again['knn']['outputs']['store']).num_images == num_train
