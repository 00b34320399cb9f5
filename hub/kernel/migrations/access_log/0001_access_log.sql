-- The append-only access log of person-level reads (schema = settings.core_schema).
-- Append-only is enforced here: triggers refuse UPDATE, DELETE and TRUNCATE.
CREATE TABLE IF NOT EXISTS {schema}.access_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    sub         text NOT NULL,
    role        text NOT NULL,
    program     text,
    action      text NOT NULL,
    subject     text NOT NULL,
    purpose     text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    entries     integer NOT NULL DEFAULT 0,
    request_id  text
);
CREATE INDEX IF NOT EXISTS access_log_subject_idx ON {schema}.access_log (subject, at);
CREATE OR REPLACE FUNCTION {schema}.access_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS access_log_append_only ON {schema}.access_log;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON {schema}.access_log
    FOR EACH ROW EXECUTE FUNCTION {schema}.access_log_refuse_change();
DROP TRIGGER IF EXISTS access_log_no_truncate ON {schema}.access_log;
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON {schema}.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.access_log_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.access_log FROM PUBLIC;
