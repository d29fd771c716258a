"""fastnn.distribution in one process (no launcher): Keras's names work and change nothing, the
errors, how a global batch is split and its gradients scaled (without MPI), and that mpi4py is
imported only when asked for."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from keras_twin import keras_module

import fastnn as keras
from fastnn import distribution, layers, losses
from fastnn.distribution import world
from fastnn.distribution.data_parallel import DataParallel
from fastnn.kernels.codes import LINEAR, RELU
from fastnn.layers import normalization


@pytest.fixture(autouse=True)
def no_distribution_after():
    yield
    distribution.set_distribution(None)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**variables, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_fastnn_does_not_import_mpi4py():
    done = _run("import sys, fastnn; fastnn.distribution.is_main(); print('mpi4py' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_mpi4py_one_process_works_and_several_say_how_to_install():
    block = "import sys; sys.modules['mpi4py'] = None; import fastnn.distribution as d; "
    alone = _run(block + "d.initialize(); print(d.rank(), d.size(), d.is_main())")
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.split() == ["0", "1", "True"]
    launched = _run(block + "d.DataParallel()", PMI_SIZE="2", PMI_RANK="0")
    assert launched.returncode != 0
    assert 'pip install "fastnn[mpi]"' in launched.stderr


def test_one_process_names_and_fit_unchanged():
    assert (distribution.rank(), distribution.size(), distribution.is_main()) == (0, 1, True)
    assert distribution.list_devices() == ["cpu:0"]
    assert distribution.distribution() is None
    x = np.random.default_rng(0).normal(size=(12, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def train():
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((3,)), layers.Dense(2), layers.Dense(1)])
        model.compile("sgd", "mse")
        model.fit(x, y, batch_size=5, epochs=2, verbose=0)
        return model.get_weights()

    expected = train()
    dp = DataParallel(devices=["cpu:0"])
    with dp.scope():
        assert distribution.distribution() is dp and distribution.active() is None
        got = train()
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    before = model.get_weights()
    dp.broadcast_model(model)  # one rank: nothing to do
    np.testing.assert_array_equal(model.get_weights()[0], before[0])
    np.testing.assert_array_equal(dp.allreduce([1.0, 2.0]), [1.0, 2.0])
    assert distribution.distribution() is None
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`devices` must be None or every rank.*cpu:0"):
        DataParallel(devices=["cpu:0", "cpu:1"])
    with pytest.raises(ValueError, match="`device_mesh` is not supported"):
        DataParallel(device_mesh=object())
    with pytest.raises(ValueError, match="`job_addresses` must be None"):
        distribution.initialize(job_addresses="10.0.0.1:1234")
    with pytest.raises(ValueError, match="`num_processes` must match MPI's; got num_processes=4"):
        distribution.initialize(num_processes=4)
    with pytest.raises(TypeError, match="expected a fastnn.distribution.DataParallel or None"):
        distribution.set_distribution("data_parallel")
    with pytest.raises(ValueError, match="runs on CPUs"):
        distribution.list_devices("gpu")


class _Model:
    """What shard() reads of a model."""

    _output_metrics = [[]]


def _rank(rank: int, size: int, sync: bool = False) -> DataParallel:
    """A DataParallel as rank ``rank`` of ``size`` sees it, without MPI (shard and scales)."""
    dp = DataParallel.__new__(DataParallel)
    dp.rank, dp.size, dp.sync_batchnorm, dp._share = rank, size, sync, 1.0
    return dp


@pytest.mark.parametrize(("rows", "size"), [(10, 3), (5, 3), (7, 2), (2, 3)])
def test_shard_splits_the_global_batch_in_order(rows, size):
    x = np.arange(rows * 2.0).reshape(rows, 2)
    y = np.arange(rows)
    parts, shares = [], []
    for rank in range(size):
        dp = _rank(rank, size)
        (xs,), (ys,), sw = dp.shard(_Model(), [x], [y], y * 0.5)
        assert len(xs) == len(ys) == len(sw) and len(xs) in (rows // size, -(-rows // size))
        parts.append(xs)
        shares.append(dp._share)
        assert dp.has_rows == (len(xs) > 0)
    np.testing.assert_array_equal(np.concatenate(parts), x)
    np.testing.assert_allclose(shares, [len(p) / rows for p in parts])


def test_shard_refuses_a_first_batch_smaller_than_the_ranks():
    model = _Model()
    model._output_metrics = None
    with pytest.raises(ValueError, match="global batch of 2 samples cannot give each of the 3"):
        _rank(0, 3).shard(model, [np.zeros((2, 1))], [None], None)
    with pytest.raises(ValueError, match="with sync_batchnorm=True"):
        _rank(0, 3, sync=True).shard(_Model(), [np.zeros((2, 1))], [None], None)


@pytest.mark.parametrize("sync", [False, True])
def test_scaled_gradients_sum_to_the_global_batch_gradient(sync):
    """Per-rank mean-loss gradients, scaled before the backward and after it (the factor
    ``reduce_gradients`` applies), summed over the ranks: the global batch's gradient, for a
    mean loss and for a "sum" loss."""
    rng = np.random.default_rng(0)
    per_sample = rng.normal(size=(7, 3))
    mean_loss, sum_loss = losses.MeanSquaredError(), losses.MeanSquaredError(reduction="sum")
    for loss, expected in ((mean_loss, per_sample.mean(0)), (sum_loss, per_sample.sum(0))):
        total = np.zeros(3)
        for rank in range(3):
            dp = _rank(rank, 3, sync)
            (part,), _, _ = dp.shard(_Model(), [per_sample], [None], None)
            local = part.sum(0) if loss is sum_loss else part.mean(0)
            (scaled,) = dp.scale_loss_gradients([local], [loss])
            total += scaled * dp._post_scale()
        np.testing.assert_allclose(total, expected, rtol=1e-12)


@pytest.mark.parametrize("code", [LINEAR, RELU])
def test_batchnorm_over_every_process_equals_the_kernels_in_one(code, monkeypatch):
    """BatchNormalization's statistics through ``cross_replica_sum`` (here one process, the sum
    of one) equal the kernels' in float64: forward, moving statistics and every gradient."""
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 5))
    grad = np.random.default_rng(1).normal(size=x.shape)

    def train(hook):
        monkeypatch.setattr(normalization, "cross_replica_sum", hook)
        layer = layers.BatchNormalization(axis=1, dtype="float64", momentum=0.5)
        layer.build(x.shape)
        layer.gamma.value[...] = [0.5, -1.0, 2.0]
        layer.beta.value[...] = [0.1, 0.2, -0.3]
        y, ctx = layer.forward_activated(x, True, code)
        y = y.copy()
        grad_x = layer.backward(ctx, grad).copy()
        return [y, grad_x, layer.gamma.grad, layer.beta.grad, *layer.get_weights()]

    calls = []
    summed = train(lambda values: calls.append(values.shape))
    assert calls == [(4,), (3,), (7,)]  # sums and count, squares; backward's sums and count
    for got, expected in zip(summed, train(None)):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("cores", "bound", "local", "threads"),
    [(8, 8, 2, 4), (8, 8, 3, 2), (2, 2, 4, 1), (8, 2, 2, 2)],  # the last: the launcher bound us
)
def test_threads_per_rank_share_the_host(cores, bound, local, threads, monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 8)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(bound)))
    monkeypatch.setattr(world._world, "local_size", local)
    assert world._threads_per_rank("auto") == threads
    assert world._threads_per_rank(3) == 3


def test_a_model_with_its_own_train_step_is_refused():
    class OwnStep(keras.Model):
        def train_step(self, data):
            return {}

    inputs = keras.Input((2,))
    model = OwnStep(inputs, layers.Dense(1)(inputs))
    with pytest.raises(NotImplementedError, match="writes its own train_step/test_step"):
        _rank(0, 2).prepare(model)


def test_keras_names_and_argument_order():
    """Keras 3's keras.distribution names that mean something on MPI ranks, with Keras's
    arguments first and in Keras's order (fastnn's own after them)."""
    keras_distribution = keras_module().distribution
    for name in (
        "DataParallel",
        "distribution",
        "get_device_count",
        "initialize",
        "list_devices",
        "set_distribution",
    ):
        ours = list(inspect.signature(getattr(distribution, name)).parameters)
        theirs = list(inspect.signature(getattr(keras_distribution, name)).parameters)
        assert ours[: len(theirs)] == theirs, name
    assert distribution.get_device_count() == distribution.get_device_count("cpu") == 1
    with pytest.raises(ValueError, match="`auto_shard_dataset` must be True"):
        DataParallel(auto_shard_dataset=False)
