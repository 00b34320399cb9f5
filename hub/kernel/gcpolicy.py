"""The garbage collector's policy for the hub's processes: batch jobs collect once per
batch, servers never traverse their start-up heap.

*Batch jobs.*
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

*Servers.* A worker's start-up heap (modules, pydantic schemas, the faust app: hundreds of
thousands of objects) never becomes garbage, yet every full collection traverses it, a
pause in the middle of a batch. :func:`freeze_startup_heap`, called once start-up is done,
moves it into the permanent generation; what the server allocates afterwards is collected
as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


class BatchGc:
    """The handle :func:`batch_gc` yields."""

    def __init__(self, every: int) -> None:
        self.every, self._batches = every, 0

    def batch_done(self) -> None:
        """Count a batch; every ``every`` batches, collect what they left in reference
        cycles (young objects only: what survives is the job's working set and is promoted,
        not traversed again)."""
        self._batches += 1
        if self._batches % self.every == 0:
            gc.collect(1)


@contextmanager
def batch_gc(every: int = 1) -> Iterator[BatchGc]:
    """Automatic collection off inside the block, a collection every ``every`` batches
    (what stays alive meanwhile, e.g. a consumer's prefetched records, is traversed by each
    one: small batches want a larger ``every``); on exit the collector is restored and a
    young collection reclaims the cycles the last batches left. No full collection on exit:
    it would traverse the whole heap (measured: 200 to 330 ms at the end of a CAD import, 4 to 6 %
    of it) to find what the restored automatic collector finds in its own time."""
    if every < 1:
        raise ValueError("every must be 1 or more")
    was_enabled = gc.isenabled()
    gc.freeze()  # modules, settings, schemas: never traversed during the job
    gc.disable()
    try:
        yield BatchGc(every)
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
        gc.collect(1)


def freeze_startup_heap() -> None:
    """Collect once, then exclude everything alive from every later collection (call at the
    end of a server's start-up; see the module docstring)."""
    gc.collect()
    gc.freeze()
