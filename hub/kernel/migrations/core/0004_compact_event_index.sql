-- The event-id index, compact (issue 14): one 56-byte row per appended event, written
-- once, AFTER the broker acknowledged the record, with its position in the same statement
-- (hub.kernel.log.produce_then_index): no claim row held open across the acks, no UPDATE.
--
--   event_id   the event id as a uuid (an id that is not a canonical uuid is stored under
--              a derived key: hub.kernel.log.event_key, the same derivation as below)
--   topic      code of the topic's name in event_index_names
--   event_type code of the event type's name in event_index_names
--   partition, offset  where the acknowledged record is
--
-- Names are held once in event_index_names (a topic or a type is a few dozen bytes that
-- every row used to repeat). `indexed_events` is the readable view (text ids and names).

CREATE TABLE IF NOT EXISTS {schema}.event_index_names (
    code smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);

-- Today's layout (text ids, a row claimed before the produce and UPDATEd with the offset
-- after it) moves into the compact table: a row without an offset was never completed.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = '{schema}' AND table_name = 'event_index' AND column_name = 'recorded_at'
    ) THEN
        ALTER TABLE {schema}.event_index RENAME TO event_index_v1;
        ALTER INDEX IF EXISTS {schema}.event_index_pkey RENAME TO event_index_v1_pkey;
        DROP INDEX IF EXISTS {schema}.event_index_position;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS {schema}.event_index (
    event_id    uuid PRIMARY KEY,
    topic       smallint NOT NULL,
    event_type  smallint NOT NULL,
    "partition" integer NOT NULL,
    "offset"    bigint NOT NULL
);

DO $$
BEGIN
    IF to_regclass('{schema}.event_index_v1') IS NOT NULL THEN
        INSERT INTO {schema}.event_index_names (name)
            SELECT topic FROM {schema}.event_index_v1
            UNION SELECT event_type FROM {schema}.event_index_v1
            ON CONFLICT (name) DO NOTHING;
        INSERT INTO {schema}.event_index (event_id, topic, event_type, "partition", "offset")
            SELECT CASE
                       WHEN o.event_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                       THEN o.event_id::uuid
                       ELSE encode(set_byte(set_byte(h.b, 6, (get_byte(h.b, 6) & 15) | 128),
                                            8, (get_byte(h.b, 8) & 63) | 128), 'hex')::uuid
                   END,
                   t.code, y.code, o."partition", o."offset"
            FROM {schema}.event_index_v1 o
            CROSS JOIN LATERAL (
                SELECT substring(sha256(convert_to('hub event id' || chr(31) || o.event_id, 'UTF8'))
                                 FROM 1 FOR 16) AS b
            ) h
            JOIN {schema}.event_index_names t ON t.name = o.topic
            JOIN {schema}.event_index_names y ON y.name = o.event_type
            WHERE o."offset" IS NOT NULL
            ON CONFLICT (event_id) DO NOTHING;
        DROP TABLE {schema}.event_index_v1;
    END IF;
END
$$;

CREATE OR REPLACE VIEW {schema}.indexed_events AS
    SELECT e.event_id::text AS event_id, y.name AS event_type, t.name AS topic, e."partition", e."offset"
    FROM {schema}.event_index e
    JOIN {schema}.event_index_names t ON t.code = e.topic
    JOIN {schema}.event_index_names y ON y.code = e.event_type;
