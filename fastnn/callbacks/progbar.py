"""ProgbarLogger: the progress bar or line fit, evaluate and predict show."""

from __future__ import annotations

import sys
import time

from fastnn.callbacks.base import Callback


class ProgbarLogger(Callback):
    """Keras-style progress: verbose=1 redraws a bar per epoch, verbose=2 prints one line.

    fit, evaluate and predict add one when their ``verbose`` is not 0; one passed in
    ``callbacks`` replaces it and, as in Keras, takes its verbosity from the call's. The same
    display covers ``evaluate`` (test steps, ending with the metrics) and ``predict`` (predict
    steps); inside ``fit`` the validation pass draws nothing, as in Keras. ``count_mode`` and
    ``stateful_metrics`` are tf.keras's arguments: progress is counted in steps and every log
    is shown as given (both what Keras 3 does), so only ``count_mode="steps"`` or None is
    accepted. ``verbose`` fixes the verbosity and ``stream`` the output (stdout by default).
    """

    main_rank_only = True  # under DataParallel, rank 0 alone prints / writes

    def __init__(self, count_mode=None, stateful_metrics=None, *, verbose=None, stream=None):
        super().__init__()
        if count_mode not in (None, "steps"):
            raise ValueError(
                "ProgbarLogger: fastnn counts progress in steps, as Keras 3 does; "
                f"count_mode must be None or 'steps', got count_mode={count_mode!r}"
            )
        self.count_mode, self.stateful_metrics = count_mode, stateful_metrics
        self._fixed_verbose = verbose
        self.verbose = 1 if verbose is None else verbose
        self.stream = stream
        self._in_fit = False

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        if self._fixed_verbose is None and "verbose" in params:
            self.verbose = 1 if params["verbose"] == "auto" else params["verbose"]

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(text)
        stream.flush()

    def _begin(self) -> None:
        self._start = self._drawn = time.perf_counter()
        self._steps_done = 0

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._begin()
        self._epoch = epoch
        epochs = self.params.get("epochs", 1)
        if self.verbose and epochs > 1:  # as Keras 3: no "Epoch 1/1" line
            self._write(f"Epoch {epoch + 1}/{epochs}\n")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._begin()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._begin()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)  # like Keras: the bar shows no prediction values

    def on_predict_end(self, logs=None):
        self._finish(None)

    def _update(self, batch, logs) -> None:
        # Redraw at most 20 times a second: a tiny model runs thousands of steps per second.
        self._steps_done = batch + 1
        now = time.perf_counter()
        if self.verbose == 1 and now - self._drawn >= 0.05:
            self._drawn = now
            self._write("\r" + self._line(batch + 1, logs or {}, bar=True))

    def _finish(self, logs) -> None:
        if self.verbose == 1:
            line = self._line(self._steps_done, logs or {}, bar=True)
            self._write("\r" + line + "\x1b[K\n")  # clear what a longer redraw left behind
        elif self.verbose == 2:
            self._write(self._line(self._steps_done, logs or {}, bar=False) + "\n")

    def _line(self, done: int, logs: dict, bar: bool) -> str:
        steps = self.params.get("steps") or done
        elapsed = time.perf_counter() - self._start
        per_step = elapsed / max(done, 1)
        width = len(str(steps))
        parts = [f"{done:>{width}}/{steps}"]
        if bar:
            filled = int(20 * done / max(steps, 1))
            parts[0] += " " + "━" * filled + "─" * (20 - filled)
        parts.append(f"{elapsed:.0f}s {_format_time(per_step)}/step")
        parts += [f"{k}: {_scalar(v):.4f}" for k, v in sorted(logs.items())]
        return " - ".join(parts)


def _scalar(value) -> float:
    """A logged value as the progress line shows it: an array result (F1Score per class, a
    metric at several thresholds) by its mean, as Keras's Progbar does."""
    if isinstance(value, float):
        return value
    return sum(value.flat) / value.size if hasattr(value, "flat") else float(value)


def _format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"
