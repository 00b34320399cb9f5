-- Read models of the stream processors (projections). {schema} is the target schema.

CREATE TABLE {schema}.facts (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    family       text NOT NULL,
    source       text NOT NULL,
    system       text NOT NULL,
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    incident_id  text,
    person       text,
    other        text,
    referral_id  text,
    keys         text[] NOT NULL,
    data         jsonb NOT NULL
);
CREATE INDEX facts_keys_idx ON {schema}.facts USING gin (keys);

CREATE TABLE {schema}.incident_summary (
    incident_id                   text PRIMARY KEY,
    agency                        text,
    received_at                   timestamptz,
    opened_at                     timestamptz,
    call_category                 text,
    behavioral_health             boolean,
    precinct                      text,
    district                      text,
    sector                        text,
    beat                          text,
    cad_outcome                   text,
    onscene_outcome               text,
    outcome                       text,
    referral_made                 boolean NOT NULL,
    connected_to_services         boolean NOT NULL,
    first_dispatched_at           timestamptz,
    first_enroute_at              timestamptz,
    first_arrived_at              timestamptz,
    last_cleared_at               timestamptz,
    response_seconds              double precision,
    time_on_scene_seconds         double precision,
    co_responder                  boolean NOT NULL,
    clinician_engaged_at          timestamptz,
    officer_released_at           timestamptz,
    officer_time_returned_seconds double precision,
    persons                       text[] NOT NULL,
    fact_count                    integer NOT NULL
);
CREATE INDEX incident_summary_received_idx ON {schema}.incident_summary (received_at);

CREATE TABLE {schema}.timeline_entries (
    event_id     text PRIMARY KEY,
    at           timestamptz NOT NULL,
    system       text NOT NULL,
    source       text NOT NULL,
    event_type   text NOT NULL,
    incident_id  text,
    person       text,
    referral_id  text,
    summary      text NOT NULL,
    detail       jsonb NOT NULL,
    visible_to   text[] NOT NULL,
    part2        boolean NOT NULL
);
CREATE INDEX timeline_entries_incident_idx ON {schema}.timeline_entries (incident_id, at);

CREATE TABLE {schema}.person_timeline (
    person    text NOT NULL,
    event_id  text NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (person, event_id)
);

CREATE TABLE {schema}.person_clusters (
    pseudonym  text PRIMARY KEY,
    canonical  text NOT NULL
);
CREATE INDEX person_clusters_canonical_idx ON {schema}.person_clusters (canonical);

CREATE TABLE {schema}.person_contacts (
    person       text NOT NULL,
    incident_id  text NOT NULL,
    contact_at   timestamptz NOT NULL,
    PRIMARY KEY (person, incident_id)
);
CREATE INDEX person_contacts_at_idx ON {schema}.person_contacts (contact_at);

CREATE TABLE {schema}.person_summary (
    person                  text PRIMARY KEY,
    members                 text[] NOT NULL,
    contacts                integer NOT NULL,
    first_contact_at        timestamptz,
    last_contact_at         timestamptz,
    max_contacts_in_window  integer NOT NULL,
    enrolled_in_services    boolean NOT NULL,
    first_enrolled_at       timestamptz
);

CREATE TABLE {schema}.referral_funnel (
    referral_id                     text PRIMARY KEY,
    person                          text,
    incident_id                     text,
    destination                     text,
    channel                         text,
    service_type                    text,
    substance_use                   boolean NOT NULL,
    requested_at                    timestamptz,
    delivered_at                    timestamptz,
    accepted_at                     timestamptz,
    completed_at                    timestamptz,
    closed_at                       timestamptz,
    status                          text NOT NULL,
    seconds_requested_to_delivered  double precision,
    seconds_delivered_to_accepted   double precision,
    seconds_accepted_to_completed   double precision
);

CREATE TABLE {schema}.consents (
    person      text NOT NULL,
    consent_id  text NOT NULL,
    granted_at  timestamptz,
    recipients  text[] NOT NULL,
    scope       text[] NOT NULL,
    purpose     text,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    PRIMARY KEY (person, consent_id)
);

CREATE TABLE {schema}.outcome_counts (
    period_kind        text NOT NULL,
    period_start       date NOT NULL,
    area_kind          text NOT NULL,
    area               text NOT NULL,
    call_category      text NOT NULL,
    behavioral_health  boolean NOT NULL,
    metric             text NOT NULL,
    value              integer NOT NULL,
    PRIMARY KEY (period_kind, period_start, area_kind, area, call_category, behavioral_health, metric)
);

CREATE TABLE {schema}.projection_positions (
    topic        text NOT NULL,
    "partition"  integer NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (topic, "partition")
);

-- What the outcome publisher last sent to the outcome topic, per record key (publisher
-- state, not a read model: a replay does not publish).
CREATE TABLE {schema}.outcome_publications (
    key           text PRIMARY KEY,
    period_start  date NOT NULL,
    record        jsonb NOT NULL
);
