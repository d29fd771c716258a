"""Data-parallel training over MPI with Keras 3's names (``keras.distribution``).

Launch the same script on every rank (``mpiexec -n 4 python train.py``, ``srun python
train.py``) and set the distribution before ``fit``::

    import fastnn as keras

    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model.fit(x, y, batch_size=256)  # 256 is the global batch: 64 per rank on 4 ranks

``fit`` then broadcasts rank 0's weights and optimizer state, gives each rank its part of every
global batch (the same shuffle on every rank), averages the gradients with one allreduce per
step, reports metrics over the global batch and lets only rank 0 print and write files.
``evaluate`` splits its batches among the ranks and returns the full result; ``predict``
splits the samples and gathers the outputs on every rank. mpi4py is imported by
``initialize()`` (which ``DataParallel()`` calls), never by ``import fastnn``. See
docs/distributed.md.
"""

from fastnn.distribution.data_parallel import (
    DataParallel,
    active,
    distribution,
    get_device_count,
    list_devices,
    set_distribution,
)
from fastnn.distribution.world import (
    barrier,
    communicator,
    initialize,
    is_main,
    local_size,
    rank,
    size,
)

__all__ = [
    "DataParallel",
    "active",
    "barrier",
    "communicator",
    "distribution",
    "get_device_count",
    "initialize",
    "is_main",
    "list_devices",
    "local_size",
    "rank",
    "set_distribution",
    "size",
]
