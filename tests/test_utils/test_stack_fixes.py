"""Tests of orl_plugin.utils.stack_fixes: the fixes for the stack's known breakages (STACK.md)."""
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint

import orl_plugin  # noqa: F401  (applies the patches)
from orl_plugin.utils import stack_fixes


class _RecordResumedState(Hook):
    """Snapshot of what the runner holds after resuming, before the first new iteration."""

    def __init__(self):
        self.state = None

    def before_train(self, runner) -> None:
        optimizer = runner.optim_wrapper.optimizer
        self.state = dict(
            epoch=runner.epoch,
            iter=runner.iter,
            momentum=[
                optimizer.state[p]['momentum_buffer'].clone() for group in optimizer.param_groups
                for p in group['params'] if 'momentum_buffer' in optimizer.state[p]
            ],
            lr=[group['lr'] for group in optimizer.param_groups],
            schedulers=[scheduler.state_dict() for scheduler in runner.param_schedulers],
            loss_history=runner.message_hub.get_scalar('train/loss').data[0].copy(),
            ema_steps=runner.model.target_net.steps.clone())


class _ReseedEachEpoch(Hook):
    """Seeds the augmentations' RNGs at every epoch start. mmengine keeps no RNG state in its
    checkpoints, so without this a resumed run draws other views than an uninterrupted one."""

    def before_train_epoch(self, runner) -> None:
        from mmengine.runner import set_random_seed
        set_random_seed(1000 + runner.epoch)


class _Interrupted(Exception):
    pass


class _InterruptAfterEpoch(Hook):
    """Stops training with an exception after an epoch (after its checkpoint is written)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.epoch:  # the loop counts the epoch after this hook
            raise _Interrupted


def _train(cfg, *hooks) -> Runner:
    runner = Runner.from_cfg(cfg)
    for hook in hooks:
        runner.register_hook(hook, priority='LOWEST')
    runner.train()
    return runner


def _to_numpy_format(src: str, dst: str) -> None:
    """Rewrite a checkpoint as orl_plugin 0.1.0 wrote them: HistoryBuffer dicts of numpy arrays
    (and a numpy scalar in the runtime info)."""
    ckpt = torch.load(src, map_location='cpu', weights_only=True)
    for buffer in ckpt['message_hub']['log_scalars'].values():
        for key in ('log_history', 'count_history'):
            buffer[key] = buffer[key].numpy()
    ckpt['message_hub']['runtime_info']['iter'] = np.int64(ckpt['message_hub']['runtime_info']['iter'])
    torch.save(ckpt, dst)


def test_resume_continues_epochs_and_optimizer_state(tmp_path, tiny_byol_cfg, one_thread):
    work_dir = str(tmp_path / 'work')
    with pytest.raises(_Interrupted):  # a 3-epoch run that dies after epoch 2
        _train(tiny_byol_cfg(work_dir, max_epochs=3), _ReseedEachEpoch(), _InterruptAfterEpoch(2))
    ckpt_path = osp.join(work_dir, 'epoch_2.pth')
    assert osp.isfile(ckpt_path)

    # The checkpoint is plain data: nothing for weights_only to refuse, even without the
    # plugin's numpy allow-list (tests/test_utils/test_portable_checkpoints.py loads it in a vanilla process).
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt_path) == []
    saved = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    assert saved['meta']['epoch'] == 2 and saved['meta']['iter'] == 4
    loss_state = saved['message_hub']['log_scalars']['train/loss']
    assert loss_state['type'] == 'HistoryBuffer' and len(loss_state['log_history']) == 4
    assert loss_state['log_history'].dtype == torch.float64

    # The old format (numpy arrays in the message hub) resumes the same way.
    _to_numpy_format(ckpt_path, str(tmp_path / 'numpy_format.pth'))
    old_format_dir = str(tmp_path / 'old_format')
    resumed_losses = []
    for resume_from, run_dir in ((None, work_dir), (str(tmp_path / 'numpy_format.pth'), old_format_dir)):
        recorder = _RecordResumedState()
        cfg = tiny_byol_cfg(run_dir, max_epochs=3, resume=True, load_from=resume_from)
        runner = _train(cfg, _ReseedEachEpoch(), recorder)

        state = recorder.state
        assert state['epoch'] == 2 and state['iter'] == 4
        saved_momentum = [s['momentum_buffer'] for s in saved['optimizer']['state'].values()]
        assert len(state['momentum']) == len(saved_momentum) > 0
        for resumed, ref in zip(state['momentum'], saved_momentum):
            torch.testing.assert_close(resumed, ref, rtol=0, atol=0)
        assert state['lr'] == [g['lr'] for g in saved['optimizer']['param_groups']]
        assert state['schedulers'] == saved['param_schedulers']
        assert [s['_global_step'] for s in state['schedulers']] == [4, 4]  # warm-up, cosine
        assert state['loss_history'].dtype == np.float64
        np.testing.assert_array_equal(state['loss_history'], loss_state['log_history'].numpy())
        assert int(state['ema_steps']) == int(saved['state_dict']['target_net.steps']) == 4

        # ... and training went on from there.
        assert runner.epoch == 3 and runner.iter == 6
        final = torch.load(osp.join(run_dir, 'epoch_3.pth'), map_location='cpu', weights_only=True)
        assert final['meta']['epoch'] == 3 and final['meta']['iter'] == 6
        assert len(final['message_hub']['log_scalars']['train/loss']['log_history']) == 6
        resumed_losses.append(runner.message_hub.get_scalar('train/loss').data[0])

    # The same losses as a run that was never interrupted, to the same tolerance (none).
    straight = _train(tiny_byol_cfg(str(tmp_path / 'straight'), max_epochs=3), _ReseedEachEpoch())
    expected = straight.message_hub.get_scalar('train/loss').data[0]
    assert len(expected) == 6
    for losses in resumed_losses:
        np.testing.assert_array_equal(losses, expected)


def test_message_hub_state_round_trip():
    hub = MessageHub.get_instance('orl_compat_round_trip')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('epoch', np.int64(3))
    hub.update_info('best_score', np.float64(0.25))  # what evaluators and CheckpointHook store
    hub.update_info('seen', np.arange(3))
    state = hub.state_dict()
    assert not isinstance(state['log_scalars']['train/loss'], HistoryBuffer)
    info = state['runtime_info']
    assert type(info['epoch']) is int and type(info['best_score']) is float
    assert info['seen'] == [0, 1, 2]

    restored = MessageHub.get_instance('orl_compat_round_trip_restored')
    restored.load_state_dict(pickle.loads(pickle.dumps(state)))
    buffer = restored.get_scalar('train/loss')
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(1.0) and buffer.current() == pytest.approx(0.5)
    assert restored.get_info('epoch') == 3


def test_apply_patches_is_idempotent():
    import mmcv
    import mmengine.dist.utils as dist_utils
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as checkpoint_module
    import mmengine.runner.runner as runner_module
    from mmengine.model import MMDistributedDataParallel

    def patched():
        return dict(
            build_dataloader=Runner.__dict__['build_dataloader'].__func__,
            state_dict=MessageHub.state_dict,
            load_state_dict=MessageHub.load_state_dict,
            save_checkpoint=runner_module.save_checkpoint,
            init_dist=dist_utils._init_dist_pytorch,
            init_dist_slurm=dist_utils._init_dist_slurm,
            ddp_init=MMDistributedDataParallel.__init__,
            adjust_hue=mmcv.adjust_hue)

    before = patched()
    # every name the runner, CheckpointHook and the strategies save through is the patched one
    assert checkpoint_module.save_checkpoint is runner_pkg.save_checkpoint is \
        before['save_checkpoint']
    safe_globals = set(map(str, torch.serialization.get_safe_globals()))
    stack_fixes.apply_patches()
    stack_fixes.apply_patches()
    assert patched() == before
    assert set(map(str, torch.serialization.get_safe_globals())) == safe_globals
    for fn in before.values():
        # One layer of wrapping over the library's own function, not a stack of them.
        assert getattr(fn, '_orl_stack_fix', False)
        assert not getattr(fn.__wrapped__, '_orl_stack_fix', False)


# --------------------------------------------------------------------------------------
# Checkpoints from elsewhere stay under weights_only=True.
# --------------------------------------------------------------------------------------
_CALLS = []


def _record_call(tag):
    _CALLS.append(tag)
    return tag


class _Payload:
    """Runs `_record_call` when unpickled by an unrestricted loader."""

    def __reduce__(self):
        return (_record_call, ('payload ran', ))


def _tiny_backbone_cfg(**kwargs) -> dict:
    return dict(type='mmpretrain.ResNet', depth=18, stem_channels=16, base_channels=16, **kwargs)


@pytest.fixture(params=['plain_object', 'numpy_object_array'])
def malicious_checkpoint(request, tmp_path):
    from mmengine.registry import MODELS
    backbone = MODELS.build(_tiny_backbone_cfg())
    state_dict = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    payload = _Payload() if request.param == 'plain_object' else \
        np.array([_Payload()], dtype=object)
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict=state_dict, meta=dict(note=payload)), path)
    _CALLS.clear()
    yield path
    assert not _CALLS, 'the payload was executed'


def test_load_checkpoint_refuses_pickled_code(malicious_checkpoint):
    from mmengine.registry import MODELS
    model = MODELS.build(_tiny_backbone_cfg())
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        load_checkpoint(model, malicious_checkpoint, map_location='cpu')


@pytest.mark.parametrize('prefix', [None, 'backbone.'])
def test_init_cfg_pretrained_refuses_pickled_code(malicious_checkpoint, prefix):
    from mmengine.registry import MODELS
    init_cfg = dict(type='Pretrained', checkpoint=malicious_checkpoint)
    if prefix:
        init_cfg['prefix'] = prefix
    backbone = MODELS.build(_tiny_backbone_cfg(init_cfg=init_cfg))
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        backbone.init_weights()


@pytest.mark.parametrize('resume', [False, True], ids=['load_from', 'resume'])
def test_runner_refuses_pickled_code(malicious_checkpoint, tmp_path, resume):
    from mmengine.registry import MODELS
    model = MODELS.build(dict(type='mmpretrain.ImageClassifier', backbone=_tiny_backbone_cfg()))
    runner = Runner(
        model=model,
        work_dir=str(tmp_path / 'work'),
        default_scope='mmpretrain',
        load_from=malicious_checkpoint,
        log_level='WARNING')
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        if resume:
            # Resuming a file is no exception: it is loaded before anything else happens.
            runner.resume(malicious_checkpoint)
        else:
            runner.load_or_resume()


# --------------------------------------------------------------------------------------
# Data loaders
# --------------------------------------------------------------------------------------
def test_mmpretrain_base_dataloader_builds_and_iterates(tmp_path, image_folder):
    cfg_path = tmp_path / 'byol_from_mmpretrain_base.py'
    cfg_path.write_text("_base_ = 'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py'\n"
                        "custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)\n"
                        "train_dataloader = dict(\n"
                        "    batch_size=2, num_workers=0,\n"
                        "    dataset=dict(_delete_=True, type='CustomDataset',\n"
                        f"                 data_root={image_folder!r}, with_label=False,\n"
                        "                 pipeline={{_base_.train_pipeline}}))\n")
    cfg = Config.fromfile(str(cfg_path))
    # The breakages this test is about are really in the inherited config.
    assert cfg.train_dataloader.collate_fn.get('_scope_') == 'mmpretrain'
    assert cfg.train_dataloader.persistent_workers is True

    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        batch = next(iter(loader))
    views = batch['inputs']
    assert len(views) == 2 and all(v.shape == (2, 3, 224, 224) for v in views)
    assert views[0].dtype == torch.uint8
    assert len(batch['data_samples']) == 2

    # Without the fix mmengine's own builder hands `_scope_` to default_collate.
    unpatched = Runner.__dict__['build_dataloader'].__func__.__wrapped__
    with DefaultScope.overwrite_default_scope(cfg.default_scope), \
            pytest.raises(TypeError, match='_scope_'):
        next(iter(unpatched(dict(cfg.train_dataloader, persistent_workers=False), seed=0)))


def _folder_loader_cfg(image_folder: str, **kwargs) -> dict:
    return dict(
        batch_size=4,
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        dataset=dict(
            type='mmpretrain.CustomDataset',
            data_root=image_folder,
            with_label=False,
            pipeline=[dict(type='mmpretrain.LoadImageFromFile'),
                      dict(type='mmpretrain.PackInputs')]),
        **kwargs)


def test_persistent_workers_without_workers_builds(image_folder):
    cfg = _folder_loader_cfg(image_folder, num_workers=0, persistent_workers=True)
    loader = Runner.build_dataloader(cfg, seed=0)
    assert loader.num_workers == 0 and not loader.persistent_workers
    batches = list(loader)
    assert len(batches) == 2 and batches[0]['inputs'].shape == (4, 3, 32, 32)
    assert cfg['persistent_workers'] is True  # the caller's config is left alone
    # Without the fix torch refuses the combination.
    unpatched = Runner.__dict__['build_dataloader'].__func__.__wrapped__
    with pytest.raises(ValueError, match='persistent_workers'):
        unpatched(cfg, seed=0)


def test_persistent_workers_with_workers_kept(image_folder):
    cfg = _folder_loader_cfg(image_folder, num_workers=1, persistent_workers=True)
    loader = Runner.build_dataloader(cfg, seed=0)
    assert loader.persistent_workers


# --------------------------------------------------------------------------------------
# mmcv.adjust_hue under numpy 2
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_adjust_hue_negative_factor(backend):
    import mmcv
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    original = mmcv.adjust_hue.__wrapped__
    with pytest.raises(OverflowError):  # the breakage, still in mmcv itself
        original(img, -0.1, backend=backend)
    for factor in (0.0, 0.1, 0.5):  # unchanged where mmcv worked
        np.testing.assert_array_equal(
            mmcv.adjust_hue(img, factor, backend=backend), original(img, factor, backend=backend))
    # A negative shift is the inverse rotation of the same positive one.
    there = mmcv.adjust_hue(img, 0.2, backend=backend)
    back = mmcv.adjust_hue(there, -0.2, backend=backend)
    hue = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL)[..., 0].astype(int)
    hue_back = cv2.cvtColor(back, cv2.COLOR_BGR2HSV_FULL)[..., 0].astype(int)
    circular = np.minimum(np.abs(hue - hue_back), 256 - np.abs(hue - hue_back))
    assert np.median(circular) <= 3


def test_color_jitter_hue_pipeline():
    from mmpretrain.registry import TRANSFORMS
    jitter = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1))
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    for _ in range(40):  # each call draws a hue factor in [-0.1, 0.1]
        out = jitter(dict(img=img.copy()))
        assert out['img'].shape == img.shape
