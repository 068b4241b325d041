-- Live stopping and adaptive allocation (issue 16): how a study spreads its comparisons over
-- model pairs, and whether it closes itself once every pair is decided or a vote budget is met.
ALTER TABLE studies
    ADD COLUMN allocation TEXT NOT NULL DEFAULT 'uniform' CHECK (allocation IN ('uniform', 'adaptive')),
    ADD COLUMN stop_when_decided BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN vote_budget INT CHECK (vote_budget IS NULL OR vote_budget > 0);
