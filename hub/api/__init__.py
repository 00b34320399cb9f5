"""The read API and dashboard: FastAPI app (:mod:`hub.api.app`), token authentication
(:mod:`hub.api.auth`), the role policy (:mod:`hub.api.roles`), the append-only access log
(:mod:`hub.api.access_log`), the read-model port and its PostgreSQL adapter
(:mod:`hub.api.ports`, :mod:`hub.api.readmodels`), the dashboard's view
(:mod:`hub.api.dashboard`) and its static files (``static/``)."""
