-- Per-person data keys move to the PKCS#11 token (hub.kernel.token): `wrapped` now holds
-- the data key encrypted on the token under the token key whose CKA_ID is `token_id`.
-- A row with token_id NULL and wrapped set is from before the token (wrapped by
-- master.key); the keyring moves it to the token on first read.
ALTER TABLE {schema}.person_keys ADD COLUMN IF NOT EXISTS token_id bytea;
