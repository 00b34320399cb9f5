"""Local infrastructure the hub starts for itself: a single-node Kafka broker (KRaft),
a PostgreSQL server, and the topic catalogue applied to whichever cluster is configured.

- :mod:`hub.devtools.infra.kafka` — fetch the broker jars, render its config, start / stop / probe it;
- :mod:`hub.devtools.infra.postgres` — install, start and provision the local PostgreSQL (or probe a DSN);
- :mod:`hub.kernel.topics` — create missing catalogue topics and report config drift;
- :mod:`hub.devtools.infra.proc` — pid files, liveness, port and lock helpers shared by the above.

Production deployments point the settings at their own cluster and database; then ``up``
only checks reachability and applies the topic catalogue.
"""

from __future__ import annotations

from hub.kernel.errors import InfraError

__all__ = ["InfraError"]
