-- The live fold counts a person's contacts within the repeat window before a new contact
-- (projections/livefold.py: WindowCounts, ContactRange) instead of reading all of them.
CREATE INDEX IF NOT EXISTS person_contacts_person_at_idx ON {schema}.person_contacts (person, contact_at);
