"""The read API's routes, one :class:`fastapi.APIRouter` per family, in the order
:func:`hub.entry.api.app.create_app` mounts them (which is the order of the OpenAPI
document): ``health`` (``/healthz``, ``/metrics``), ``dev_issuer`` (development only),
``identity`` (``/v1/me``), ``timelines`` (person-level, audited), ``reports``
(aggregates), ``operations``, ``audit`` and ``dashboard`` (the page and its assets).
Their dependencies come from :mod:`hub.entry.api.deps`."""
