"""The connector framework: sources, pure mappers, the runner that appends and commits.

- :mod:`connectors.core.records` — raw records and the three mapping results
  (events, :class:`Rejection`, :class:`Exclusion`);
- :mod:`connectors.core.counts` — the per-record accounting that must add up;
- :mod:`connectors.core.ports` — what the runner needs from the log and from state;
- :mod:`connectors.core.runner` — ``ingest_batch`` (pure orchestration over ports) and
  :class:`SourceRunner` (poll, append, commit the cursor, back off on errors);
- :mod:`connectors.core.state` — PostgreSQL cursors and first-revision claims;
- :mod:`connectors.core.recorded` — the content-addressed mapper configurations components
  record, so a dead letter is re-driven with the configuration that rejected it;
- :mod:`connectors.core.memory` — in-memory fakes of the ports for tests and tools.
"""
