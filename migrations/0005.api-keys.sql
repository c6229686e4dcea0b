-- API keys: one per desk system or administrator. Only a SHA-256 of the secret
-- part is stored (the secret is 256 random bits, so a slow hash adds nothing);
-- the key is shown once at creation. Revoked keys stay for the audit trail:
-- recorded_by in events names the key id.
CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    secret_sha256 bytea NOT NULL,
    library text,            -- NULL: the consortium administrator
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

GRANT SELECT, INSERT, UPDATE ON api_keys TO tongjie_app;
