-- Loss curves of distillation jobs: one row per optimizer step ('train': loss components)
-- and per held-out evaluation ('eval': output and feature MSE against the teacher). Written
-- only by the job's lease holder; a resumed run rewrites the steps it repeats.
CREATE TABLE distill_points (
    job_id UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage INT NOT NULL CHECK (stage >= 0),
    kind TEXT NOT NULL CHECK (kind IN ('train', 'eval')),
    step BIGINT NOT NULL CHECK (step >= 0),
    data JSONB NOT NULL,
    PRIMARY KEY (job_id, stage, kind, step)
);
