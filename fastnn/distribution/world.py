"""The MPI world a data-parallel run spans: rank, size, the ranks on this host, threads per rank.

mpi4py is imported by ``initialize()`` only, never by ``import fastnn``. Before ``initialize()``
(or without a launcher) ``rank()`` and ``size()`` read the launcher's environment, so a script may
ask ``is_main()`` first; a process started without ``mpiexec``/``srun`` is rank 0 of 1.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from fastnn import config

INSTALL_HINT = 'pip install "fastnn[mpi]"'

#: The rank and size variables MPI launchers set (MPICH/Hydra and Slurm's PMI, Open MPI, PMIx,
#: MVAPICH), read before MPI is initialized.
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class _World:
    """What ``initialize()`` found: the communicator (None in a single process) and counts."""

    comm = None
    mpi = None  # the mpi4py.MPI module
    rank = 0
    size = 1
    local_size = 1
    initialized = False


_world = _World()


def _launcher_value(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def launched_size() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    return _launcher_value(_SIZE_VARIABLES, 1)


def _import_mpi(why: str):
    """mpi4py's MPI module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("mpi4py.MPI")
    except ImportError as error:
        raise ImportError(
            f"fastnn.distribution: {why} needs mpi4py and an MPI library; install them with "
            f"{INSTALL_HINT} (or pip install mpi4py with your system's MPI)"
        ) from error


def initialize(
    job_addresses=None,
    num_processes: int | None = None,
    process_id: int | None = None,
    num_threads: int | str | None = "auto",
) -> None:
    """Join the MPI job this process was launched in (``mpiexec -n N``, ``srun``): rank and size
    come from MPI. Harmless in a single process: one no launcher started is rank 0 of 1 and
    leaves MPI alone (mpi4py need not be installed). Calling it again does nothing.

    Keras's ``job_addresses`` has no meaning here (the MPI launcher connects the processes) and
    must be None; ``num_processes`` and ``process_id``, if given, are checked against MPI's.
    ``num_threads="auto"`` gives each rank the host's cores divided by the ranks on that host
    (``fastnn.config.set_num_threads``), or the cores the launcher bound it to; an int sets that
    count; None leaves the threads alone.
    """
    if job_addresses is not None:
        raise ValueError(
            "fastnn.distribution.initialize(): `job_addresses` must be None: the MPI launcher "
            f"(mpiexec, srun) connects the processes; got job_addresses={job_addresses!r}"
        )
    if not _world.initialized:
        _join(num_processes)
        if num_threads is not None and _world.size > 1:
            config.set_num_threads(_threads_per_rank(num_threads))
    for name, given, actual in (
        ("num_processes", num_processes, _world.size),
        ("process_id", process_id, _world.rank),
    ):
        if given is not None and given != actual:
            raise ValueError(
                f"fastnn.distribution.initialize(): `{name}` must match MPI's; got "
                f"{name}={given}, MPI says {actual} (launch with mpiexec -n N)"
            )


def launched() -> bool:
    """Whether an MPI launcher started this process (its rank or size variables are set)."""
    return any(name in os.environ for name in _RANK_VARIABLES + _SIZE_VARIABLES)


def _join(num_processes: int | None) -> None:
    wanted = max(launched_size(), num_processes or 1)
    if not launched() and wanted == 1:  # a plain process: rank 0 of 1, MPI left alone
        _world.initialized = True
        return
    try:
        mpi = _import_mpi("running on several processes")
    except ImportError:
        if wanted > 1:
            raise
        _world.initialized = True  # a single process, no MPI: rank 0 of 1
        return
    comm = mpi.COMM_WORLD.Dup()  # fastnn's messages never mix with the user's own
    local = comm.Split_type(mpi.COMM_TYPE_SHARED)
    _world.mpi, _world.comm = mpi, comm
    _world.rank, _world.size, _world.local_size = comm.Get_rank(), comm.Get_size(), local.size
    local.Free()
    _world.initialized = True
    if _world.size > 1:
        sys.excepthook = _aborting_excepthook(sys.excepthook)


def _aborting_excepthook(previous):
    """An excepthook that, after ``previous`` prints the error, ends every rank: a rank whose
    script dies outside fit() would otherwise leave the others waiting in a collective."""

    def hook(kind, error, trace):
        previous(kind, error, trace)
        sys.stderr.write(
            f"fastnn.distribution: rank {_world.rank} of {_world.size} ended on an uncaught "
            f"{kind.__name__}; aborting every rank.\n"
        )
        sys.stderr.flush()
        _world.comm.Abort(1)

    return hook


def _threads_per_rank(num_threads: int | str) -> int:
    """The thread count of this rank: ``num_threads`` or, for "auto", its share of the host."""
    import numba  # as fastnn.config: numba only when threads are set

    available = numba.config.NUMBA_NUM_THREADS
    if num_threads != "auto":
        return int(num_threads)
    cores = os.cpu_count() or 1
    bound = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    share = bound if bound < cores else cores // _world.local_size  # the launcher bound us
    return max(1, min(available, share))


def rank() -> int:
    """This process's rank: MPI's after ``initialize()``, else the launcher's (0 without one)."""
    return _world.rank if _world.initialized else _launcher_value(_RANK_VARIABLES, 0)


def size() -> int:
    """How many processes: MPI's after ``initialize()``, else the launcher's (1 without one)."""
    return _world.size if _world.initialized else launched_size()


def local_size() -> int:
    """How many ranks share this host (MPI's shared-memory communicator); 1 before initialize."""
    return _world.local_size


def is_main() -> bool:
    """Whether this is rank 0, the one that prints progress and writes files."""
    return rank() == 0


def communicator():
    """fastnn's MPI communicator (a duplicate of COMM_WORLD), initializing first; None in a
    single process."""
    if not _world.initialized:
        initialize()
    return _world.comm


def barrier() -> None:
    """Wait until every rank gets here (nothing in a single process)."""
    comm = communicator()
    if comm is not None:
        comm.Barrier()


def abort(call: str, error: BaseException) -> None:
    """Print ``error`` naming this rank, then end every rank of the job (MPI_Abort)."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    sys.stdout.flush()
    sys.stderr.write(
        f"fastnn.distribution: rank {_world.rank} of {_world.size} failed in {call}; aborting "
        f"every rank.\n{''.join(lines)}fastnn.distribution: rank {_world.rank} raised "
        f"{type(error).__name__}: {error}\n"
    )
    sys.stderr.flush()
    _world.comm.Abort(1)
