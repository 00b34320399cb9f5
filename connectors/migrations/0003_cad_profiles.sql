-- The CAD profiles components map with (bundled or YAML-path base + the county's
-- overrides), content-addressed: a dead letter's `profile` holds the ref, so a re-drive maps
-- with the county's profile, never with a same-named bundled one (connectors/cad/used_profile.py).
CREATE TABLE IF NOT EXISTS {schema}.cad_profiles (
    ref         text PRIMARY KEY,          -- <name>@sha256:<16 hex> over origin, overrides, profile
    name        text NOT NULL,
    origin      text NOT NULL,             -- bundled profile name or absolute YAML path
    overrides   jsonb NOT NULL,
    profile     jsonb NOT NULL,            -- the effective profile when first recorded
    recorded_at timestamptz NOT NULL DEFAULT now()
);
