-- Study integrity for paid crowd studies: one person is one participant, one open
-- assignment at a time, a "closing" state, fast votes flagged, images timed from when
-- they were served.

-- "closing": no new participants; those in progress may finish.
ALTER TABLE studies DROP CONSTRAINT IF EXISTS studies_status_check;
ALTER TABLE studies ADD CONSTRAINT studies_status_check
    CHECK (status IN ('draft', 'open', 'closing', 'closed'));
-- A study created to open itself once its first pair of images exists (a comparison set
-- up before generation has run): opening by hand needs a live pair.
ALTER TABLE studies ADD COLUMN open_when_ready BOOLEAN NOT NULL DEFAULT FALSE;
-- Votes faster than this are flagged (and can be excluded from reports).
ALTER TABLE studies ADD COLUMN fast_vote_ms INT NOT NULL DEFAULT 700
    CHECK (fast_vote_ms >= 0 AND fast_vote_ms <= 600000);
-- An unanswered assignment stops counting in the scheduler's balance after this long, so
-- abandoned comparisons are handed out again.
ALTER TABLE studies ADD COLUMN assignment_timeout_s INT NOT NULL DEFAULT 1800
    CHECK (assignment_timeout_s > 0 AND assignment_timeout_s <= 604800);

-- The crowd identity a participant is known by: ('prolific', PROLIFIC_PID) or
-- ('mturk', workerId); both NULL for anonymous participants (keyed by their cookie).
ALTER TABLE participants ADD COLUMN platform TEXT CHECK (platform IN ('prolific', 'mturk'));
ALTER TABLE participants ADD COLUMN external_id TEXT;
ALTER TABLE participants ADD CONSTRAINT participants_identity
    CHECK ((platform IS NULL) = (external_id IS NULL));
-- Earlier data may hold the same person several times: the first keeps the identity, the
-- others keep their raw IDs (still exported) but no longer block the unique index.
UPDATE participants p SET platform = x.platform, external_id = x.external_id
FROM (
    SELECT id, platform, external_id,
           row_number() OVER (PARTITION BY study_id, platform, external_id ORDER BY created_at, id) AS n
    FROM (SELECT id, study_id, created_at,
                 CASE WHEN prolific_pid IS NOT NULL THEN 'prolific'
                      WHEN mturk_worker_id IS NOT NULL THEN 'mturk' END AS platform,
                 COALESCE(prolific_pid, mturk_worker_id) AS external_id
          FROM participants) ids
    WHERE external_id IS NOT NULL
) x
WHERE p.id = x.id AND x.n = 1;
CREATE UNIQUE INDEX participants_one_person ON participants (study_id, platform, external_id)
    WHERE external_id IS NOT NULL;

-- A participant may hold several tokens (one per device or join); only hashes are stored.
CREATE TABLE participant_tokens (
    token_hash TEXT PRIMARY KEY,
    participant_id UUID NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX participant_tokens_participant ON participant_tokens (participant_id);
INSERT INTO participant_tokens (token_hash, participant_id, created_at)
SELECT token_hash, id, created_at FROM participants;

-- When an assignment was answered (NULL while open), and when each image was first served.
ALTER TABLE assignments ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE assignments ADD COLUMN left_served_at TIMESTAMPTZ;
ALTER TABLE assignments ADD COLUMN right_served_at TIMESTAMPTZ;
UPDATE assignments a SET closed_at = v.created_at FROM votes v WHERE v.assignment_id = a.id;
-- Earlier data may hold several open assignments per participant: keep the newest open.
UPDATE assignments a SET closed_at = now()
WHERE a.closed_at IS NULL AND EXISTS (
    SELECT 1 FROM assignments b
    WHERE b.participant_id = a.participant_id AND b.closed_at IS NULL
      AND (b.issued_at, b.id) > (a.issued_at, a.id));
-- At most one open assignment per participant: concurrent requests get the same one.
CREATE UNIQUE INDEX assignments_one_open ON assignments (participant_id) WHERE closed_at IS NULL;
-- Schedulers in several processes re-read the open assignments of a study often.
CREATE INDEX assignments_open ON assignments (study_id) WHERE closed_at IS NULL;

-- Comparisons handed out per model pair, counted by the assignment insert itself: the
-- side of each one follows from it (blocks of two, opposite sides, the first side drawn
-- from a hash), so every process on the database shares one side balance.
ALTER TABLE model_pairs ADD COLUMN sides BIGINT NOT NULL DEFAULT 0;
UPDATE model_pairs mp SET sides = (SELECT count(*) FROM assignments a WHERE a.model_pair_id = mp.id);

-- Votes with model A on the left, per pair, kept by the vote statement: with `votes` it gives
-- every process the side balance without scanning the votes.
ALTER TABLE pairs ADD COLUMN a_left BIGINT NOT NULL DEFAULT 0;
UPDATE pairs p SET a_left = (
    SELECT count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id
    WHERE a.pair_id = p.id AND a.left_image = p.image_a);

-- The server's own measure (from both images served to the vote) and the fast flag.
ALTER TABLE votes ADD COLUMN server_ms INT CHECK (server_ms >= 0);
ALTER TABLE votes ADD COLUMN fast BOOLEAN NOT NULL DEFAULT FALSE;
