"""CallbackList: the container fit, evaluate and predict call each hook through."""

from __future__ import annotations

from fastnn import distribution
from fastnn.callbacks.base import Callback, History
from fastnn.callbacks.progbar import ProgbarLogger
from fastnn.callbacks.simple import TerminateOnNaN


class CallbackList(Callback):
    """Dispatches each hook to every callback (Keras 3's container).

    ``CallbackList(callbacks, add_history=False, add_progbar=False, model=None, **params)`` as
    in Keras; fit passes its own ``history``, and ``verbose`` adds a ProgbarLogger (and goes
    in ``params``) unless one is in ``callbacks``. Every hook gets a logs dict. Under a
    DataParallel distribution, ranks but 0 leave out the callbacks that print or write files
    (``main_rank_only``).
    """

    def __init__(
        self,
        callbacks=None,
        add_history=False,
        add_progbar=False,
        model=None,
        *,
        history=None,
        verbose=0,
        params=None,
        **more_params,
    ):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks must be fastnn.callbacks.Callback instances; got {cb!r}"
                )
        if (add_history or history is not None) and not any(
            isinstance(cb, History) for cb in self.callbacks
        ):
            self.callbacks.append(history if history is not None else History())
        if (add_progbar or verbose) and not any(
            isinstance(cb, ProgbarLogger) for cb in self.callbacks
        ):
            self.callbacks.append(ProgbarLogger())
        if distribution.active() is not None and not distribution.is_main():
            self.callbacks = [cb for cb in self.callbacks if not cb.main_rank_only]
        params = {**(params or {}), **more_params}
        if verbose and "verbose" not in params:
            params["verbose"] = verbose
        self.set_model(model)
        self.set_params(params)

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def set_model(self, model) -> None:
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        if params:
            for cb in self.callbacks:
                cb.set_params(params)

    def terminates_on_nan(self) -> bool:
        return any(isinstance(cb, TerminateOnNaN) for cb in self.callbacks)

    def invalid_loss(self, batch, loss) -> None:
        """fit's step found a non-finite loss: each TerminateOnNaN raises or stops training."""
        for cb in self.callbacks:
            if isinstance(cb, TerminateOnNaN):
                cb.invalid_loss(batch, loss)

    def __getattribute__(self, name):
        """``on_<hook>([index], logs=None)`` calls it on every callback with a logs dict, as
        Keras's CallbackList does: positional for epoch and begin/end hooks, ``logs=`` for batch
        hooks."""
        if not name.startswith("on_"):
            return super().__getattribute__(name)
        per_batch = "batch" in name
        indexed = per_batch or "epoch" in name
        callbacks = super().__getattribute__("callbacks")

        def dispatch(*args, logs=None):
            index, rest = (args[:1], args[1:]) if indexed else ((), args)
            if rest:
                logs = rest[0]
            logs = logs if logs is not None else {}
            for cb in callbacks:
                if per_batch:
                    getattr(cb, name)(*index, logs=logs)
                else:
                    getattr(cb, name)(*index, logs)

        return dispatch
