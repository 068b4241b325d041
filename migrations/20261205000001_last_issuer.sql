-- Which serve process issued a model pair's latest comparison, and when (database time).
-- A process that finds another's id there, newer than its own plan of the study, knows it
-- shares the study and balances through the database (src/study/scheduler.rs); a process
-- alone never re-reads the counts.
ALTER TABLE model_pairs ADD COLUMN last_issuer UUID, ADD COLUMN last_issued_at TIMESTAMPTZ;
