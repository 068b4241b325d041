-- Server-side admin sessions: the cookie carries only a random id (stored here as its
-- SHA-256, so a database dump yields no usable cookie). A session is valid while it is not
-- revoked, not past its absolute expiry, and seen within the idle timeout; deleting the
-- admin deletes their sessions.
CREATE TABLE admin_sessions (
    id_hash BYTEA PRIMARY KEY,
    admin_id UUID NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);
