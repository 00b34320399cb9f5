"""The read API and dashboard: FastAPI app (:mod:`hub.entry.api.app`, a short assembly of
the routers in :mod:`hub.entry.api.routes`, whose dependencies come from
:mod:`hub.entry.api.deps`), token authentication (:mod:`hub.entry.api.auth`), the role
policy (:mod:`hub.entry.api.roles`), the append-only access log (:mod:`hub.kernel.audit`),
the read-model port and its PostgreSQL adapter (:mod:`hub.entry.api.ports`,
:mod:`hub.entry.api.readmodels`), the dashboard's view (:mod:`hub.entry.api.dashboard`) and
its static files (``static/``)."""
