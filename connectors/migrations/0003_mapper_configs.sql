-- The mapper configurations components map with, content-addressed by ref
-- (connectors/core/recorded.py): a CAD profile (`kind` 'cad': base + the county's
-- overrides) or a case mapping (`kind` 'cases': source, person namespace, agency). A dead
-- letter's `profile` holds the ref, so a re-drive maps with the component's configuration,
-- never with defaults.
CREATE TABLE IF NOT EXISTS {schema}.mapper_configs (
    ref         text PRIMARY KEY,          -- <name>@sha256:<16 hex> over the whole config
    kind        text NOT NULL,             -- the source family it maps for: cad, cases
    name        text NOT NULL,             -- the ref's name (a CAD profile's name; 'cases')
    config      jsonb NOT NULL,            -- the configuration when first recorded
    recorded_at timestamptz NOT NULL DEFAULT now()
);

