//! Queries behind the participant flow: participants, what the next request needs to know
//! of one, and votes. Each step is one statement; the participant read and the vote take
//! several requests at once (`super::batch` shares them under load). Storing assignments
//! is in `super::issuing`.

use std::sync::LazyLock;

use super::DbError;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::db::studies::{StudyRow, COLUMNS_OF_S};
use crate::domain::{Choice, ExternalIds};

/// Who joined: the participant, and whether they were already in the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub participant_id: Uuid,
    pub resumed: bool,
}

/// Adds a participant holding `token_hash`, or — when someone with the same crowd identity
/// is already in the study — gives that participant the new token as well. With
/// `may_add` false (a study that takes no new participants) only the second can happen.
pub async fn join_participant(
    pool: &PgPool,
    study_id: Uuid,
    token_hash: &str,
    ext: &ExternalIds,
    may_add: bool,
) -> Result<Option<Joined>, DbError> {
    let (platform, external_id) = ext.identity().unzip();
    if may_add {
        let id = Uuid::new_v4();
        // The new participant and its token in one statement; a person already known
        // (the unique identity index) inserts nothing here.
        let added: Option<Uuid> = sqlx::query_scalar(
            "WITH ins AS ( \
               INSERT INTO participants (id, study_id, token_hash, prolific_pid, prolific_study_id, \
                 prolific_session_id, mturk_worker_id, mturk_assignment_id, mturk_hit_id, platform, external_id) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
               ON CONFLICT (study_id, platform, external_id) WHERE external_id IS NOT NULL DO NOTHING \
               RETURNING id), \
             tok AS (INSERT INTO participant_tokens (token_hash, participant_id) SELECT $3, id FROM ins) \
             SELECT id FROM ins",
        )
        .bind(id)
        .bind(study_id)
        .bind(token_hash)
        .bind(&ext.prolific_pid)
        .bind(&ext.prolific_study_id)
        .bind(&ext.prolific_session_id)
        .bind(&ext.mturk_worker_id)
        .bind(&ext.mturk_assignment_id)
        .bind(&ext.mturk_hit_id)
        .bind(platform)
        .bind(external_id)
        .fetch_optional(pool)
        .await?;
        if let Some(participant_id) = added {
            return Ok(Some(Joined {
                participant_id,
                resumed: false,
            }));
        }
    }
    let (Some(platform), Some(external_id)) = (platform, external_id) else {
        return Ok(None);
    };
    // A separate statement, so it sees the row a concurrent join just committed.
    let resumed: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO participant_tokens (token_hash, participant_id) \
         SELECT $1, id FROM participants WHERE study_id = $2 AND platform = $3 AND external_id = $4 \
         RETURNING participant_id",
    )
    .bind(token_hash)
    .bind(study_id)
    .bind(platform)
    .bind(external_id)
    .fetch_optional(pool)
    .await?;
    Ok(resumed.map(|participant_id| Joined {
        participant_id,
        resumed: true,
    }))
}

/// Whether someone with this crowd identity is already a participant of the study.
pub async fn is_known(pool: &PgPool, study_id: Uuid, ext: &ExternalIds) -> Result<bool, DbError> {
    let Some((platform, external_id)) = ext.identity() else {
        return Ok(false);
    };
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM participants WHERE study_id = $1 AND platform = $2 AND external_id = $3)",
    )
    .bind(study_id)
    .bind(platform)
    .bind(external_id)
    .fetch_one(pool)
    .await?)
}

/// The study and crowd identity of the participant holding a token, if any.
pub async fn token_owner(
    pool: &PgPool,
    token_hash: &str,
) -> Result<Option<(Uuid, Option<String>, Option<String>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT p.study_id, p.platform, p.external_id FROM participant_tokens t \
         JOIN participants p ON p.id = t.participant_id WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?)
}

/// Everything `next` needs to know about a participant and their study, in one row (one
/// round trip per request).
#[derive(Debug, FromRow)]
pub struct ParticipantState {
    #[sqlx(flatten)]
    pub study: StudyRow,
    pub participant_id: Uuid,
    pub votes_done: i32,
    pub is_prolific: bool,
    pub open_assignment: Option<Uuid>,
    pub open_prompt: Option<String>,
    pub seen_prompts: Vec<Uuid>,
    pub seen_model_pairs: Vec<Uuid>,
}

pub async fn participant_state(
    pool: &PgPool,
    token_hash: &str,
) -> Result<Option<ParticipantState>, DbError> {
    let mut states = participant_states(pool, &[token_hash.to_string()]).await?;
    Ok(states.pop().flatten())
}

/// The statement of [`participant_states`], built once (it embeds [`COLUMNS_OF_S`]).
static STATES: LazyLock<String> = LazyLock::new(|| {
    format!(
        // Each token looked up by its own lateral subquery, kept apart by OFFSET 0 (else the
        // planner merges it into one join and, on small tables, hashes whole tables per
        // statement): index lookups whatever the array's length and the tables' sizes.
        "SELECT i.n, x.* FROM unnest($1::text[]) WITH ORDINALITY AS i(token_hash, n) \
         JOIN LATERAL ( \
           SELECT {COLUMNS_OF_S}, p.id AS participant_id, p.votes_done, \
             p.prolific_pid IS NOT NULL AS is_prolific, \
             o.id AS open_assignment, o.text AS open_prompt, \
             ARRAY(SELECT a.prompt_id FROM assignments a WHERE a.participant_id = p.id AND NOT a.gold ORDER BY a.id) AS seen_prompts, \
             ARRAY(SELECT a.model_pair_id FROM assignments a WHERE a.participant_id = p.id AND NOT a.gold ORDER BY a.id) AS seen_model_pairs \
           FROM participant_tokens t JOIN participants p ON p.id = t.participant_id JOIN studies s ON s.id = p.study_id \
           LEFT JOIN LATERAL ( \
             SELECT a.id, pr.text FROM assignments a JOIN prompts pr ON pr.id = a.prompt_id \
             WHERE a.participant_id = p.id AND a.closed_at IS NULL) o ON TRUE \
           WHERE t.token_hash = i.token_hash OFFSET 0) x ON TRUE"
    )
});

/// [`participant_state`] for several tokens in one statement, in their order (requests
/// sharing a statement under load: see [`super::batch`]).
pub async fn participant_states(
    pool: &PgPool,
    tokens: &[String],
) -> Result<Vec<Option<ParticipantState>>, DbError> {
    #[derive(FromRow)]
    struct Row {
        n: i64,
        #[sqlx(flatten)]
        state: ParticipantState,
    }
    let rows = sqlx::query_as::<_, Row>(&STATES)
        .bind(tokens)
        .fetch_all(pool)
        .await?;
    let mut states: Vec<Option<ParticipantState>> = tokens.iter().map(|_| None).collect();
    for row in rows {
        let Some(slot) = usize::try_from(row.n - 1)
            .ok()
            .and_then(|i| states.get_mut(i))
        else {
            return Err(DbError::Corrupt(format!(
                "batch row {} of {}",
                row.n,
                tokens.len()
            )));
        };
        *slot = Some(row.state);
    }
    Ok(states)
}

/// What happened to a vote, as one statement saw it.
#[derive(Debug, FromRow)]
pub struct VoteResult {
    pub found: bool,
    pub mine: bool,
    pub study_open: bool,
    pub allowed: bool,
    /// The participant still had votes to give (their target not reached).
    pub room: bool,
    /// A vote was there before this statement.
    pub voted: bool,
    pub inserted: bool,
    pub pair_id: Option<Uuid>,
    pub study_id: Option<Uuid>,
    /// The pair's model A was on the left.
    pub a_left: Option<bool>,
    /// The study's stopping rule, for the scheduler to apply after the vote.
    pub stop_when_decided: bool,
    pub vote_budget: Option<i32>,
    pub status_open: bool,
}

/// One vote as the participant sent it.
#[derive(Debug, Clone)]
pub struct VoteInput {
    pub assignment_id: Uuid,
    pub token_hash: String,
    pub choice: Choice,
    pub response_ms: Option<i32>,
}

/// Records a vote if the assignment exists, belongs to the token's participant, its study
/// takes votes, the choice is offered, the participant's target is not reached and no vote
/// is there yet; counts it and closes the assignment in the same statement.
///
/// Timing: `response_ms` is the client's measure; `None` (pages without script) means the
/// server's: from when both images were served, else from when the assignment was issued.
/// The server's own measure is stored beside it, and the vote is flagged `fast` when
/// either is below the study's threshold — a client cannot hide a fast vote by claiming
/// a slow one.
pub async fn record_vote(pool: &PgPool, vote: &VoteInput) -> Result<VoteResult, DbError> {
    let mut results = record_votes(pool, &[vote]).await?;
    results
        .pop()
        .ok_or_else(|| DbError::Corrupt("a vote statement answered no row".into()))
}

/// [`record_vote`] for several votes in one statement, the results in the votes' order.
/// Each vote's assignment is read by its own lateral subquery (OFFSET 0 keeps the planner
/// from merging it into a join that hashes whole tables). The counters of a pair or
/// participant that several votes touch are raised once by their number (a row is updated
/// once per statement), pairs in id order so that concurrent batches lock them in the same
/// order.
pub async fn record_votes(pool: &PgPool, votes: &[&VoteInput]) -> Result<Vec<VoteResult>, DbError> {
    let ids: Vec<Uuid> = votes.iter().map(|v| v.assignment_id).collect();
    let tokens: Vec<&str> = votes.iter().map(|v| v.token_hash.as_str()).collect();
    let choices: Vec<&str> = votes.iter().map(|v| v.choice.as_str()).collect();
    let response: Vec<Option<i32>> = votes.iter().map(|v| v.response_ms).collect();
    let vote_ids: Vec<Uuid> = votes.iter().map(|_| Uuid::new_v4()).collect();
    let rows = sqlx::query_as::<_, VoteResult>(
        "WITH i AS ( \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::uuid[]) WITH ORDINALITY \
             AS i(assignment_id, token_hash, choice, response_ms, vote_id, n)), \
         a AS ( \
           SELECT i.n, i.vote_id, i.choice, i.response_ms, x.* FROM i JOIN LATERAL ( \
           SELECT a.id, a.participant_id, a.pair_id, a.study_id, \
             a.left_image, s.fast_vote_ms, s.stop_when_decided, s.vote_budget, s.status = 'open' AS status_open, \
             t.token_hash IS NOT NULL AS mine, \
             s.status IN ('open', 'closing') AS study_open, \
             (i.choice IN ('left', 'right') OR (i.choice = 'tie' AND s.allow_tie) OR (i.choice = 'both_bad' AND s.allow_both_bad)) AS allowed, \
             p.votes_done < s.votes_per_participant AS room, \
             EXISTS (SELECT 1 FROM votes v WHERE v.assignment_id = a.id) AS voted, \
             CASE WHEN a.left_served_at IS NOT NULL AND a.right_served_at IS NOT NULL THEN \
               LEAST(extract(epoch FROM now() - GREATEST(a.left_served_at, a.right_served_at)) * 1000, 2147483647)::int END AS server_ms, \
             LEAST(extract(epoch FROM now() - a.issued_at) * 1000, 2147483647)::int AS issued_ms \
           FROM assignments a JOIN participants p ON p.id = a.participant_id JOIN studies s ON s.id = a.study_id \
             LEFT JOIN participant_tokens t ON t.token_hash = i.token_hash AND t.participant_id = a.participant_id \
           WHERE a.id = i.assignment_id OFFSET 0) x ON TRUE), \
         ins AS ( \
           INSERT INTO votes (id, assignment_id, choice, response_ms, server_ms, fast) \
           SELECT a.vote_id, a.id, a.choice, COALESCE(a.response_ms, a.server_ms, a.issued_ms), a.server_ms, \
             COALESCE(a.response_ms, a.server_ms, a.issued_ms) < a.fast_vote_ms OR COALESCE(a.server_ms < a.fast_vote_ms, FALSE) \
           FROM a WHERE a.mine AND a.study_open AND a.allowed AND a.room ORDER BY a.n \
           ON CONFLICT (assignment_id) DO NOTHING RETURNING id, assignment_id), \
         done AS (SELECT a.* FROM a JOIN ins ON ins.id = a.vote_id), \
         up AS ( \
           UPDATE participants p SET votes_done = p.votes_done + c.k \
           FROM (SELECT participant_id, count(*)::int AS k FROM done GROUP BY participant_id ORDER BY participant_id) c \
           WHERE p.id = c.participant_id RETURNING p.id), \
         upp AS ( \
           UPDATE pairs pp SET votes = pp.votes + c.k, a_left = pp.a_left + c.l \
           FROM (SELECT d.pair_id, count(*) AS k, sum((q.image_a = d.left_image)::int) AS l \
                 FROM done d JOIN pairs q ON q.id = d.pair_id GROUP BY d.pair_id ORDER BY d.pair_id) c \
           WHERE pp.id = c.pair_id RETURNING pp.id), \
         cl AS ( \
           UPDATE assignments SET closed_at = now() WHERE id IN (SELECT assignment_id FROM ins) RETURNING id) \
         SELECT a.id IS NOT NULL AS found, COALESCE(a.mine, FALSE) AS mine, \
           COALESCE(a.study_open, FALSE) AS study_open, COALESCE(a.allowed, FALSE) AS allowed, \
           COALESCE(a.room, FALSE) AS room, COALESCE(a.voted, FALSE) AS voted, \
           EXISTS (SELECT 1 FROM ins WHERE ins.id = i.vote_id) AS inserted, a.pair_id, a.study_id, \
           (SELECT q.image_a = a.left_image FROM pairs q WHERE q.id = a.pair_id) AS a_left, \
           COALESCE(a.stop_when_decided, FALSE) AS stop_when_decided, a.vote_budget, \
           COALESCE(a.status_open, FALSE) AS status_open \
         FROM i LEFT JOIN a ON a.n = i.n ORDER BY i.n",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(&choices)
    .bind(&response)
    .bind(&vote_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The stored files an assignment shows (the broken one on a gold check's broken side),
/// left and right, for the participant holding `token_hash` only. Records when `side` was
/// first served, so the server can time the answer from when both images were there.
pub async fn assignment_images(
    pool: &PgPool,
    assignment_id: Uuid,
    token_hash: &str,
    left: bool,
) -> Result<Option<(String, String)>, DbError> {
    let side = if left { "left" } else { "right" };
    let files: Option<(String, String)> = sqlx::query_as(
        "WITH a AS ( \
           SELECT a.id, a.gold, a.gold_broken_side, a.left_image, a.right_image, \
             CASE WHEN $2 = 'left' THEN a.left_served_at ELSE a.right_served_at END AS served_at \
           FROM assignments a \
           WHERE a.id = $1 AND EXISTS (SELECT 1 FROM participant_tokens t \
             WHERE t.participant_id = a.participant_id AND t.token_hash = $3)), \
         u AS ( \
           UPDATE assignments SET \
             left_served_at = CASE WHEN $2 = 'left' THEN now() ELSE left_served_at END, \
             right_served_at = CASE WHEN $2 = 'right' THEN now() ELSE right_served_at END \
           WHERE id = (SELECT id FROM a WHERE served_at IS NULL) RETURNING id) \
         SELECT CASE WHEN a.gold AND a.gold_broken_side = 'left' THEN il.broken_file ELSE il.file END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'right' THEN ir.broken_file ELSE ir.file END \
         FROM a JOIN images il ON il.id = a.left_image JOIN images ir ON ir.id = a.right_image",
    )
    .bind(assignment_id)
    .bind(side)
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(files)
}
