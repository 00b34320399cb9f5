-- Data keys are encrypted on the PKCS#11 token (hub.kernel.token) under the namespace's
-- current EPOCH key; `wrapped` holds nonce ‖ AES-GCM(epoch key, data key, aad = kid|epoch)
-- and `epoch` names the epoch key. A row with `epoch` NULL and `wrapped` set is from before
-- the token (wrapped by master.key); the keyring moves it to the current epoch on first
-- read, and every rotation moves all of them. A tombstone has neither.
ALTER TABLE {schema}.person_keys ADD COLUMN IF NOT EXISTS epoch bigint;
CREATE INDEX IF NOT EXISTS person_keys_epoch ON {schema}.person_keys (epoch);

-- The epochs: the current one (retired_at NULL, at most one) and those a rotation (an
-- erasure) retired. A retired epoch's key is destroyed on the token once the rotation has
-- committed; the rows stay as the history of rotations (no secret in them).
CREATE TABLE IF NOT EXISTS {schema}.key_epochs (
    epoch      bigint PRIMARY KEY CHECK (epoch > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS key_epochs_current ON {schema}.key_epochs ((true)) WHERE retired_at IS NULL;
