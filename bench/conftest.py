"""Kernel benchmarks run in one process (pyproject's ``-n auto`` starts no workers here):
timings beside another worker would measure the contention."""


def pytest_xdist_auto_num_workers(config):
    return 0
