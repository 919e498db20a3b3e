"""Scale-out: the end-of-day batch on a Dask cluster (``xmargin batch``).

See :mod:`xmargin.distributed.batch`.  Needs ``dask[distributed]`` (the ``distributed`` extra).
"""

from xmargin.distributed.batch import (
    BatchIncompleteError,
    BatchStats,
    batch_job,
    combine_books,
    dask_client,
    distributed_margins,
    margin_partition,
    partitions,
    read_books,
)

__all__ = [
    "BatchIncompleteError",
    "BatchStats",
    "batch_job",
    "combine_books",
    "dask_client",
    "distributed_margins",
    "margin_partition",
    "partitions",
    "read_books",
]
