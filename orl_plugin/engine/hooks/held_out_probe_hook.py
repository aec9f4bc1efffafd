"""What the held-out probe hooks share: when they run, where, and how they fail."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class HeldOutProbeHook(Hook):
    """Base of the probes that score the online backbone on held-out data during training.

    It runs the probe before training and every ``interval`` epochs (and after the last one), on
    the main process only (eval-mode forwards, no collective ops), and logs its scalars and one
    line. The probe's data are read once, on first use; when they cannot be read the hook logs a
    warning with the reason and turns itself off instead of stopping the training. When features
    come out NaN/inf it still logs, with a warning that the scores mean nothing. Not registered:
    subclasses give :meth:`prepare`, :meth:`measure` and :meth:`report`.

    Args:
        interval: Probe every ``interval`` epochs (and after the last one).
    """

    priority = 'LOW'
    title = 'probe'  # names the probe in the log
    feature_kind = ''  # names what was embedded, in the NaN warning

    def __init__(self, interval: int = 5) -> None:
        if interval < 1:
            raise ValueError(f'{type(self).__name__}: interval must be >= 1, got {interval}')
        self.interval = interval
        self._data: Any = None
        self._init: Optional[Dict[str, Any]] = None
        self.disabled_reason: Optional[str] = None

    def prepare(self, runner: Any) -> Any:
        """The probe's data, read once. Raise ``OSError``/``ValueError``/``KeyError`` on bad data."""
        raise NotImplementedError

    def measure(self, model: Any, data: Any) -> Dict[str, Any]:
        """Score ``model``; the result must hold ``num_nonfinite``, the NaN/inf features."""
        raise NotImplementedError

    def report(self, res: Dict[str, Any], init: Dict[str, Any]) -> Tuple[Dict[str, float], str, int]:
        """Scalars to log, the log line's text and the number of features embedded, from this
        result and the first one of the run."""
        raise NotImplementedError

    def _run(self, runner: Any, tag: str) -> None:
        if not is_main_process() or self.disabled_reason is not None:
            return
        t0 = time.time()
        if self._data is None:
            try:
                self._data = self.prepare(runner)
            except (OSError, ValueError, KeyError) as e:
                self.disabled_reason = f'{type(e).__name__}: {e}'
                runner.logger.warning(f'{self.title} turned off: {self.disabled_reason}')
                return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        res = self.measure(model, self._data)
        if self._init is None:
            self._init = res
        scalars, text, num_features = self.report(res, self._init)
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        if res['num_nonfinite']:
            runner.logger.warning(
                f'{self.title} ({tag}): {res["num_nonfinite"]} of {num_features} {self.feature_kind} features are '
                'NaN/inf: the network has diverged or its BN statistics are broken, so its scores mean nothing')
        runner.logger.info(f'{self.title} ({tag}): {text}; {time.time() - t0:.1f} s')

    def before_train(self, runner: Any) -> None:
        """The baseline: the features the run starts from (random init or the loaded weights)."""
        if runner.epoch == 0:
            self._run(runner, 'before training')

    def after_train_epoch(self, runner: Any) -> None:
        if self.every_n_epochs(runner, self.interval) or self.is_last_train_epoch(runner):
            self._run(runner, f'epoch {runner.epoch + 1}')  # the loop counts the epoch after the hooks
