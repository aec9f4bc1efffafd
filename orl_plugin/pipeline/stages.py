"""The stage graph: each stage's entry point, config file, inputs (as data) and output.

==================  =========  ======================================  =====================================
stage (aliases)     entry      consumes                                produces
==================  =========  ======================================  =====================================
stage1 (1)          train      -                                       latest checkpoint
knn (2a)            test       stage-1 checkpoint (CHECKPOINT arg)     ``knn.orlstore``
selective_search    test       -                                       ``selective_search.orlstore``
(2b, ss)
correspondence (2c) test       stage-1 checkpoint, 2a + 2b stores      ``correspondence.orlstore``
stage3 (3)          train      2c store                                latest checkpoint
finetune (ft)       det_train  stage-3 checkpoint (``--pretrained``)   latest checkpoint + bbox mAP
==================  =========  ======================================  =====================================
"""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple


class PipelineError(RuntimeError):
    """A stage failed, or the pipeline was set up wrongly (missing config, unknown stage...)."""


# A Wire target that is not a config key: the entry point's checkpoint argument, i.e. tools/test.py's
# CHECKPOINT (the model's ``load_from``) or tools/det_train.py's ``--pretrained`` (which points every
# ``Pretrained`` init_cfg of the detector at it: the backbone, and a C4 shared head).
CHECKPOINT = 'CHECKPOINT'
# The mining evaluators write their store to this key; the pipeline points it into the stage's work dir.
STORE_OUT_KEY = 'test_evaluator.out_file'


@dataclass(frozen=True)
class Wire:
    """One input of a stage: the output of stage ``source`` goes to ``to`` (a config key, or CHECKPOINT)."""

    source: str
    to: str


@dataclass(frozen=True)
class StageSpec:
    """One node of the stage graph.

    Attributes:
        name: canonical name, also the sub-folder of the work dir.
        entry: ``'train'`` (tools/train.py), ``'test'`` (tools/test.py) or ``'det_train'``
            (tools/det_train.py, the mmdet fine-tune).
        config_file: the file name this stage's config has in a config directory.
        inputs: where each upstream output goes, in the order the cfg-options are written.
        store: file name of the store a mining stage writes (into its work dir, through STORE_OUT_KEY).
        aliases: other names accepted by ``--from`` / ``--to`` / per-stage ``--cfg-options``.
        optional: only run when asked (the detection fine-tune, ``--finetune``).
        title: what the stage does, for the log.
    """

    name: str
    entry: str
    config_file: str
    inputs: Tuple[Wire, ...] = ()
    store: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    optional: bool = False
    title: str = ''

    @property
    def deps(self) -> Tuple[str, ...]:
        """Stages whose outputs this stage consumes."""
        return tuple(dict.fromkeys(w.source for w in self.inputs))

    @property
    def output(self) -> str:
        """The kind of output: ``'store'`` (mining stages) or ``'checkpoint'`` (training stages)."""
        return 'store' if self.entry == 'test' else 'checkpoint'


# The config keys follow the shipped configs.
STAGES: Tuple[StageSpec, ...] = (  # topologically ordered
    StageSpec(
        'stage1',
        'train',
        'stage1.py',
        aliases=('1', 'byol'),
        title='stage 1: image-level self-supervised model (BYOL by default)'),
    StageSpec(
        'knn',
        'test',
        'knn.py',
        inputs=(Wire('stage1', CHECKPOINT), ),
        store='knn.orlstore',
        aliases=('2a', ),
        title='stage 2a: KNN image retrieval'),
    StageSpec(
        'selective_search',
        'test',
        'selective_search.py',
        store='selective_search.orlstore',
        aliases=('2b', 'ss'),
        title='stage 2b: selective search'),
    StageSpec(
        'correspondence',
        'test',
        'correspondence.py',
        inputs=(
            Wire('stage1', CHECKPOINT),
            Wire('selective_search', 'test_dataloader.dataset.proposal_file'),  # read by its ProposalDataset
            Wire('knn', 'test_cfg.knn_file'),  # read by its loop
        ),
        store='correspondence.orlstore',
        aliases=('2c', 'corr'),
        title='stage 2c: RoI pair retrieval'),
    StageSpec(
        'stage3',
        'train',
        'stage3.py',
        inputs=(Wire('correspondence', 'train_dataloader.dataset.correspondence_file'), ),  # read by ORLDataset
        aliases=('3', 'orl'),
        title='stage 3: object-level pre-training'),
    StageSpec(
        'finetune',
        'det_train',
        'finetune.py',
        inputs=(Wire('stage3', CHECKPOINT), ),
        aliases=('ft', 'det'),
        optional=True,
        title='detection fine-tune'),
)
STAGE_BY_NAME: Dict[str, StageSpec] = {s.name: s for s in STAGES}


def stage_names() -> str:
    """Every stage with its aliases, for help texts and errors."""
    return ', '.join(f"{s.name} ({'/'.join(s.aliases)})" for s in STAGES)


def resolve_stage(name: str) -> str:
    """Canonical stage name for a name or alias (``2a`` -> ``knn``)."""
    key = name.strip().lower().replace('-', '_')
    for spec in STAGES:
        if key == spec.name or key in spec.aliases:
            return spec.name
    raise PipelineError(f'unknown stage {name!r}; stages are: {stage_names()}')


def descendants(stage: str) -> List[str]:
    """``stage`` and every stage that consumes its output, directly or not, in pipeline order."""
    out = {stage}
    for spec in STAGES:
        if any(d in out for d in spec.deps):
            out.add(spec.name)
    return [s.name for s in STAGES if s.name in out]


def select_stages(finetune: bool, to_stage: Optional[str]) -> List[str]:
    """The stages of a run, in order: the optional ones only with ``finetune``, none after ``to_stage``."""
    names = [s.name for s in STAGES if finetune or not s.optional]
    if to_stage:
        to = resolve_stage(to_stage)
        if to not in names:
            raise PipelineError(f'--to {to}: that stage is not part of this run (add --finetune?)')
        names = names[:names.index(to) + 1]
    return names


def wire(spec: StageSpec, upstream: Mapping[str, str], work_dir: str) -> Tuple[Optional[str], Dict[str, str]]:
    """``(checkpoint argument, {config key: value})`` of a stage.

    ``upstream`` maps each stage in ``spec.deps`` to its output path; a mining stage's own store goes
    into ``work_dir``.
    """
    checkpoint, keys = None, {}
    for w in spec.inputs:
        if w.to == CHECKPOINT:
            checkpoint = upstream[w.source]
        else:
            keys[w.to] = upstream[w.source]
    if spec.store:
        keys[STORE_OUT_KEY] = osp.join(work_dir, spec.store)
    return checkpoint, keys
