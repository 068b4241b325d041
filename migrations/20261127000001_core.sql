-- The platform's core data model: studies, models, prompts, images, candidate pairs,
-- participants, assignments (what a participant was shown) and votes.

CREATE TABLE studies (
    id UUID PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    question TEXT NOT NULL,
    instructions TEXT NOT NULL DEFAULT '',
    consent_text TEXT NOT NULL DEFAULT '',
    notice TEXT NOT NULL DEFAULT '',
    votes_per_participant INT NOT NULL CHECK (votes_per_participant > 0),
    allow_tie BOOLEAN NOT NULL DEFAULT TRUE,
    allow_both_bad BOOLEAN NOT NULL DEFAULT TRUE,
    gold_rate DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (gold_rate >= 0 AND gold_rate <= 1),
    completion_code TEXT NOT NULL,
    completion_url TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'open', 'closed')),
    -- Bumped whenever the set of candidate pairs changes, so schedulers know to reload.
    pairs_version BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE models (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE prompts (
    id UUID PRIMARY KEY,
    study_id UUID NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    category TEXT,
    challenge TEXT,
    external_id TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (study_id, text)
);
CREATE UNIQUE INDEX prompts_external_id ON prompts (study_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE images (
    id UUID PRIMARY KEY,
    study_id UUID NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    prompt_id UUID NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    model_id UUID NOT NULL REFERENCES models (id),
    seed BIGINT,
    steps INT,
    guidance DOUBLE PRECISION,
    scheduler TEXT,
    width INT NOT NULL,
    height INT NOT NULL,
    sha256 TEXT NOT NULL,
    -- Path of the stored (re-encoded, metadata-free) file relative to the image store.
    file TEXT NOT NULL,
    -- A visibly broken version of this image, used for gold (attention) checks.
    broken_sha256 TEXT NOT NULL,
    broken_file TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One image per prompt, model and seed (NULL seeds compare equal here).
CREATE UNIQUE INDEX images_identity ON images (study_id, prompt_id, model_id, COALESCE(seed, -1));

CREATE TABLE model_pairs (
    id UUID PRIMARY KEY,
    study_id UUID NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    -- model_a's name sorts before model_b's in byte order.
    model_a UUID NOT NULL REFERENCES models (id),
    model_b UUID NOT NULL REFERENCES models (id),
    UNIQUE (study_id, model_a, model_b),
    CHECK (model_a <> model_b)
);

CREATE TABLE pairs (
    id UUID PRIMARY KEY,
    study_id UUID NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    prompt_id UUID NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    model_pair_id UUID NOT NULL REFERENCES model_pairs (id) ON DELETE CASCADE,
    image_a UUID NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    image_b UUID NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    votes BIGINT NOT NULL DEFAULT 0,
    UNIQUE (image_a, image_b)
);
CREATE INDEX pairs_study ON pairs (study_id);

CREATE TABLE participants (
    id UUID PRIMARY KEY,
    study_id UUID NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    prolific_pid TEXT,
    prolific_study_id TEXT,
    prolific_session_id TEXT,
    mturk_worker_id TEXT,
    mturk_assignment_id TEXT,
    mturk_hit_id TEXT,
    votes_done INT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX participants_study ON participants (study_id);

CREATE TABLE assignments (
    id UUID PRIMARY KEY,
    participant_id UUID NOT NULL REFERENCES participants (id) ON DELETE CASCADE,
    study_id UUID NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    -- NULL for gold checks, which compare an image with its broken version.
    pair_id UUID REFERENCES pairs (id) ON DELETE CASCADE,
    prompt_id UUID NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    model_pair_id UUID REFERENCES model_pairs (id) ON DELETE CASCADE,
    left_image UUID NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    right_image UUID NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    gold BOOLEAN NOT NULL DEFAULT FALSE,
    -- For gold checks: which side shows the broken version.
    gold_broken_side TEXT CHECK (gold_broken_side IN ('left', 'right')),
    issued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (gold = (pair_id IS NULL)),
    CHECK (gold = (gold_broken_side IS NOT NULL))
);
CREATE INDEX assignments_participant ON assignments (participant_id);
-- A participant never sees the same prompt and model pair twice.
CREATE UNIQUE INDEX assignments_once ON assignments (participant_id, prompt_id, model_pair_id) WHERE NOT gold;

CREATE TABLE votes (
    id UUID PRIMARY KEY,
    assignment_id UUID NOT NULL UNIQUE REFERENCES assignments (id) ON DELETE CASCADE,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    response_ms INT NOT NULL CHECK (response_ms >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE admins (
    id UUID PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX assignments_pair ON assignments (pair_id);
