"""Hypothesis profiles: no deadline (first calls compile Numba kernels); derandomized on CI.
Worker processes for pytest-xdist's ``-n auto`` (pyproject's addopts)."""

import os

import pytest
from hypothesis import settings

settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_xdist_auto_num_workers(config):
    """One worker per core, up to 4: a cold run is mostly Numba compiling, one core per worker
    (on 2 cores 3 min instead of 4.5-5); more workers would each compile the shared kernels
    again. None below 2 cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if (cores or 1) < 2 else min(cores, 4)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """tests/ holds no benchmarks (bench/ does): pytest-benchmark stays off, and quiet about
    being off beside xdist's workers."""
    config.option.benchmark_disable = True
