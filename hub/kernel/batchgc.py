"""Garbage collection for batch jobs: collected once per batch, not every few hundred
allocations.

A batch job (a rebuild's reader or loader, a bulk import) allocates millions of short-lived
objects while holding a large, long-lived working set. CPython's automatic collector then
runs a young collection every 700 allocations and, now and then, traverses the whole heap:
measured on the rebuild's fold, a third of its CPU. The objects are freed by reference
counting anyway; the collector is only needed for reference cycles, which the folds do
not make in bulk. :func:`batch_gc` turns the automatic collector off for a block (moving
everything alive at its start into the permanent generation), and :meth:`BatchGc.batch_done`
collects the young objects at a point the job chooses (after each batch), so garbage cycles
never outlive a batch. Process-wide: use it in a process (or the one thread that
allocates) running a batch job, never in a latency-bound server.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


class BatchGc:
    """The handle :func:`batch_gc` yields."""

    def batch_done(self) -> None:
        """Collect what the last batch left in reference cycles (young objects only: what
        survives is the job's working set and is promoted, not traversed again each batch)."""
        gc.collect(1)


@contextmanager
def batch_gc() -> Iterator[BatchGc]:
    """Automatic collection off inside the block; on exit it is restored and one full
    collection reclaims any cycle the block left."""
    was_enabled = gc.isenabled()
    gc.freeze()  # modules, settings, schemas: never traversed during the job
    gc.disable()
    try:
        yield BatchGc()
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
        gc.collect()
