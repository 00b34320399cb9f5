-- Releases are events: every outcome release the hub publishes to analysts (a closed
-- month's table on the outcome topic) is one append-only row here, appended to the sealed
-- audit topic too (hub.kernel.audit): what was published (the records' digest and count),
-- when, from which read-model schema, under which vocabulary and hub version.
CREATE TABLE IF NOT EXISTS {schema}.release_log (
    id                 bigserial PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT clock_timestamp(),
    release_id         text NOT NULL,
    read_model_schema  text NOT NULL,
    channel            text NOT NULL,
    vocabulary         text,
    code_version       text NOT NULL,
    records            integer NOT NULL,
    records_sha256     text NOT NULL
);
CREATE INDEX IF NOT EXISTS release_log_release_idx ON {schema}.release_log (release_id);
CREATE OR REPLACE FUNCTION {schema}.release_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'release_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS release_log_append_only ON {schema}.release_log;
CREATE TRIGGER release_log_append_only BEFORE UPDATE OR DELETE ON {schema}.release_log
    FOR EACH ROW EXECUTE FUNCTION {schema}.release_log_refuse_change();
DROP TRIGGER IF EXISTS release_log_no_truncate ON {schema}.release_log;
CREATE TRIGGER release_log_no_truncate BEFORE TRUNCATE ON {schema}.release_log
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.release_log_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.release_log FROM PUBLIC;
