-- The job queue (generation and distillation work done by workers), the workers that run
-- it, registered model folders, and the provenance of generated images.

CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority INT NOT NULL DEFAULT 0,
    attempts INT NOT NULL DEFAULT 0,
    max_attempts INT NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    run_after TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The worker holding the job and its lease; every update a worker makes names both,
    -- so a worker whose lease was taken over changes nothing.
    worker_id TEXT,
    lease_token UUID,
    lease_expires_at TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    progress_done INT NOT NULL DEFAULT 0,
    progress_total INT NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    last_error TEXT,
    log TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT UNIQUE,
    study_id UUID REFERENCES studies (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'running') = (lease_token IS NOT NULL))
);
-- What a claim scans: only queued rows, in claim order.
CREATE INDEX jobs_ready ON jobs (priority DESC, run_after, created_at) WHERE status = 'queued';
-- What the lease reaper scans.
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_created ON jobs (created_at DESC);

-- Wakes listening workers when work becomes ready; sent on commit, so a job enqueued in
-- an admin's transaction is never seen before it exists.
CREATE FUNCTION jobs_notify() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'queued' THEN
        PERFORM pg_notify('arenaxl_jobs', NEW.kind);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_notify();

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    device TEXT NOT NULL,
    kinds TEXT[] NOT NULL,
    current_job UUID,
    status TEXT NOT NULL DEFAULT 'idle',
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Registered models: a diffusers folder, checked on registration, and a hash of its weights.
ALTER TABLE models
    ADD COLUMN folder TEXT,
    ADD COLUMN weights_hash TEXT,
    ADD COLUMN info JSONB,
    ADD COLUMN registered_at TIMESTAMPTZ;

-- Full provenance of generated images: model, folder, weights hash, scheduler, steps,
-- guidance, seed, size, dtype, device, engine version, generation time.
ALTER TABLE images ADD COLUMN provenance JSONB;
