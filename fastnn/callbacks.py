"""Callbacks with Keras's hooks, the History every fit returns, and the progress display."""

from __future__ import annotations

import sys
import time


def is_interactive() -> bool:
    """True when stdout is a terminal (progress bars redraw in place there)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class Callback:
    """Base class: override the ``on_*`` hooks; ``self.model`` and ``self.params`` are set."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records each epoch's logs: ``history.history["loss"]`` is the list of epoch losses."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """Keras-style progress: verbose=1 redraws a bar per epoch, verbose=2 prints one line."""

    def __init__(self, verbose: int = 1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(text)
        stream.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch
        if self.verbose:
            self._write(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}\n")

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose == 1:
            self._write("\r" + self._line(batch + 1, logs or {}, bar=True))

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 1:
            self._write("\r" + self._line(self.params.get("steps", 0), logs or {}, bar=True) + "\n")
        elif self.verbose == 2:
            self._write(self._line(self.params.get("steps", 0), logs or {}, bar=False) + "\n")

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
        parts += [f"{k}: {v:.4f}" for k, v in sorted(logs.items())]
        return " - ".join(parts)


def _format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


class TerminateOnNaN(Callback):
    """Stop training, instead of raising, when the loss becomes NaN or infinite."""


class CallbackList:
    """Dispatches each hook to every callback, with History and the progress logger added."""

    def __init__(self, callbacks=None, model=None, history=None, verbose=0, params=None):
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks must be fastnn.callbacks.Callback instances; got {cb!r}"
                )
        if verbose and not any(isinstance(cb, ProgbarLogger) for cb in self.callbacks):
            self.callbacks.append(ProgbarLogger(verbose))
        if history is not None:
            self.callbacks.append(history)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params or {})

    def terminates_on_nan(self) -> bool:
        return any(isinstance(cb, TerminateOnNaN) for cb in self.callbacks)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def dispatch(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)

        return dispatch
