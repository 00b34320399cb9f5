-- The reveal audit (core set's deadletter_access) is append-only like the access log:
-- triggers refuse UPDATE, DELETE and TRUNCATE; the runtime role holds INSERT and SELECT only.
CREATE OR REPLACE FUNCTION {schema}.deadletter_access_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deadletter_access is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS deadletter_access_append_only ON {schema}.deadletter_access;
CREATE TRIGGER deadletter_access_append_only BEFORE UPDATE OR DELETE ON {schema}.deadletter_access
    FOR EACH ROW EXECUTE FUNCTION {schema}.deadletter_access_refuse_change();
DROP TRIGGER IF EXISTS deadletter_access_no_truncate ON {schema}.deadletter_access;
CREATE TRIGGER deadletter_access_no_truncate BEFORE TRUNCATE ON {schema}.deadletter_access
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.deadletter_access_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.deadletter_access FROM PUBLIC;
