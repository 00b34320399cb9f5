-- Where record MACs began (hub.kernel.quarantine): per fact partition, the first offset
-- from which every record must carry a valid MAC. Records below it (written before MACs)
-- are accepted only when the event index holds their event id at exactly that offset.
-- Written once, at the first start of a MAC-enabled hub on this namespace; never updated.
CREATE TABLE IF NOT EXISTS {schema}.record_mac_cutover (
    topic          text    NOT NULL,
    "partition"    integer NOT NULL,
    before_offset  bigint  NOT NULL CHECK (before_offset >= 0),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, "partition")
);
