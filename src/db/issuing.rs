//! Storing the assignments the scheduler picked: one statement for any number of them (a
//! batch of concurrent `next` requests, see [`super::batch`]), each checked against the
//! database as it stands, each with its own outcome.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::studies::{StudyRow, COLUMNS_OF_S};
use super::DbError;

/// An assignment to store as a participant's open one, on behalf of the holder of
/// `token_hash`.
#[derive(Debug, Clone)]
pub struct Issue {
    pub id: Uuid,
    pub participant_id: Uuid,
    pub token_hash: String,
    pub study_id: Uuid,
    /// The version of the study's pairs the pick was made from.
    pub pairs_version: i64,
    pub what: Issued,
}

/// What an assignment shows.
#[derive(Debug, Clone, Copy)]
pub enum Issued {
    /// A comparison of the pair's two images; which goes left is decided in the statement.
    Pair {
        pair_id: Uuid,
        prompt_id: Uuid,
        model_pair_id: Uuid,
        image_a: Uuid,
        image_b: Uuid,
        /// This process (`model_pairs.last_issuer`) and when it read its plan.
        issuer: Uuid,
        since: DateTime<Utc>,
    },
    /// A gold check: an image beside its broken version.
    Gold {
        prompt_id: Uuid,
        image: Uuid,
        broken_left: bool,
    },
}

/// The participant and study as the storing statement saw them.
#[derive(Debug, FromRow)]
pub struct IssuedRow {
    #[sqlx(flatten)]
    pub study: StudyRow,
    pub votes_done: i32,
    pub is_prolific: bool,
    /// Model A went to the left (comparisons).
    pub a_left: bool,
    /// Another process issued this model pair's previous comparison after `since`.
    pub other: bool,
}

/// What became of an assignment the scheduler chose.
#[derive(Debug)]
pub enum Stored {
    Stored(Box<IssuedRow>),
    /// The participant may not get one now: their token, their target, the study's
    /// status or its pairs changed since the caller last read them.
    Refused,
    /// The participant already has an open assignment (a concurrent request stored it).
    AlreadyOpen,
    /// The participant has already had this prompt and model pair.
    Seen,
}

/// The statement of [`issue_many`], built once (it embeds [`COLUMNS_OF_S`]).
static ISSUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int8[], \
             $6::uuid[], $7::uuid[], $8::uuid[], $9::uuid[], $10::uuid[], $11::text[], $12::uuid[], \
             $13::timestamptz[]) WITH ORDINALITY AS i(id, participant_id, token_hash, study_id, version, \
             pair_id, prompt_id, model_pair_id, image_a, image_b, broken_side, issuer, since, n)), \
         g AS (SELECT i.n, x.* FROM i JOIN LATERAL ( \
             SELECT {COLUMNS_OF_S}, p.votes_done, p.prolific_pid IS NOT NULL AS is_prolific, \
               EXISTS (SELECT 1 FROM assignments a WHERE a.participant_id = p.id AND a.closed_at IS NULL) AS has_open, \
               (i.model_pair_id IS NOT NULL AND EXISTS (SELECT 1 FROM assignments a WHERE a.participant_id = p.id \
                 AND a.prompt_id = i.prompt_id AND a.model_pair_id = i.model_pair_id AND NOT a.gold)) AS seen \
             FROM participant_tokens t JOIN participants p ON p.id = t.participant_id \
               JOIN studies s ON s.id = p.study_id \
             WHERE t.token_hash = i.token_hash AND p.id = i.participant_id AND s.id = i.study_id \
               AND s.pairs_version = i.version AND s.status IN ('open', 'closing') \
               AND p.votes_done < s.votes_per_participant OFFSET 0) x ON TRUE), \
         ok AS (SELECT DISTINCT ON (i.participant_id) i.* FROM i JOIN g ON g.n = i.n \
             WHERE NOT g.has_open AND NOT g.seen ORDER BY i.participant_id, i.n), \
         lk AS (SELECT m.id, m.sides, m.last_issuer, m.last_issued_at FROM model_pairs m \
             WHERE m.id IN (SELECT model_pair_id FROM ok) ORDER BY m.id FOR UPDATE), \
         up AS (UPDATE model_pairs m SET sides = m.sides + c.k, last_issuer = c.issuer, last_issued_at = now() \
             FROM (SELECT model_pair_id, count(*) AS k, (array_agg(issuer))[1] AS issuer FROM ok \
                   WHERE model_pair_id IS NOT NULL GROUP BY model_pair_id) c \
             WHERE m.id = c.model_pair_id RETURNING m.id), \
         r AS (SELECT ok.*, lk.sides + row_number() OVER (PARTITION BY ok.model_pair_id ORDER BY ok.n) - 1 AS k \
             FROM ok LEFT JOIN lk ON lk.id = ok.model_pair_id), \
         sd AS (SELECT r.*, (get_byte(decode(md5(r.model_pair_id::text || ':' || (r.k / 2)::text), 'hex'), 0) % 2 = 1) \
             <> (r.k % 2 = 1) AS a_left FROM r), \
         ins AS (INSERT INTO assignments (id, participant_id, study_id, pair_id, prompt_id, model_pair_id, \
               left_image, right_image, gold, gold_broken_side) \
             SELECT id, participant_id, study_id, pair_id, prompt_id, model_pair_id, \
               CASE WHEN a_left IS NOT FALSE THEN image_a ELSE image_b END, \
               CASE WHEN a_left IS NOT FALSE THEN image_b ELSE image_a END, \
               broken_side IS NOT NULL, broken_side FROM sd ORDER BY n \
             ON CONFLICT DO NOTHING RETURNING id, left_image) \
         SELECT g.*, ins.id IS NOT NULL AS stored, COALESCE(ins.left_image = i.image_a, TRUE) AS a_left, \
           COALESCE(lk.last_issuer <> i.issuer AND lk.last_issued_at >= i.since, FALSE) AS other \
         FROM g JOIN i ON i.n = g.n LEFT JOIN ins ON ins.id = i.id LEFT JOIN lk ON lk.id = i.model_pair_id \
         ORDER BY g.n"
    )
});

/// [`issue_many`] for one assignment.
pub async fn issue(pool: &PgPool, issue: Issue) -> Result<Stored, DbError> {
    issue_many(pool, vec![issue])
        .await?
        .pop()
        .ok_or_else(|| DbError::Corrupt("an issuing statement answered nothing".into()))
}

/// Stores assignments in one statement, the outcomes in their order. Each is stored only
/// if what the caller knew still holds: the token names the participant, the study takes
/// votes, the participant's target is not reached, the pairs are those the pick was made
/// from (else [`Stored::Refused`]); the participant has no open assignment, in the
/// database or earlier in the batch ([`Stored::AlreadyOpen`]), and has not had the prompt
/// and model pair ([`Stored::Seen`]). The unique indexes still decide races with other
/// transactions (`ON CONFLICT DO NOTHING`: the loser is told `AlreadyOpen`, or `Seen`).
///
/// A comparison's sides are decided here: the model pair's `sides` counter (one for every
/// process on the database) numbers its comparisons, and in each block of two consecutive
/// ones model A is once on the left and once on the right, the first side drawn from a
/// hash of the model pair and the block (not guessable without the pair's random id).
/// The model pairs are locked in id order (no deadlock between processes' batches). A
/// comparison that loses a race with another transaction has used its number: a block
/// left with one side; rare (one participant's requests racing in two processes) and
/// bounded by such races. The model pair is marked as last issued by the issuer; the row
/// says whether another process had issued its previous comparison at or after `since`:
/// then the study is shared.
pub async fn issue_many(pool: &PgPool, issues: Vec<Issue>) -> Result<Vec<Stored>, DbError> {
    let n = issues.len();
    let mut ids = Vec::with_capacity(n);
    let mut participants = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut studies = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut pairs: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut prompts = Vec::with_capacity(n);
    let mut model_pairs: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut images_a = Vec::with_capacity(n);
    let mut images_b = Vec::with_capacity(n);
    let mut broken: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut issuers: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut since: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    for i in &issues {
        ids.push(i.id);
        participants.push(i.participant_id);
        tokens.push(i.token_hash.as_str());
        studies.push(i.study_id);
        versions.push(i.pairs_version);
        match i.what {
            Issued::Pair {
                pair_id,
                prompt_id,
                model_pair_id,
                image_a,
                image_b,
                issuer,
                since: s,
            } => {
                pairs.push(Some(pair_id));
                prompts.push(prompt_id);
                model_pairs.push(Some(model_pair_id));
                images_a.push(image_a);
                images_b.push(image_b);
                broken.push(None);
                issuers.push(Some(issuer));
                since.push(Some(s));
            }
            Issued::Gold {
                prompt_id,
                image,
                broken_left,
            } => {
                pairs.push(None);
                prompts.push(prompt_id);
                model_pairs.push(None);
                images_a.push(image);
                images_b.push(image);
                broken.push(Some(if broken_left { "left" } else { "right" }));
                issuers.push(None);
                since.push(None);
            }
        }
    }
    #[derive(FromRow)]
    struct Row {
        n: i64,
        stored: bool,
        has_open: bool,
        seen: bool,
        #[sqlx(flatten)]
        issued: IssuedRow,
    }
    let rows = sqlx::query_as::<_, Row>(&ISSUE)
        .bind(&ids)
        .bind(&participants)
        .bind(&tokens)
        .bind(&studies)
        .bind(&versions)
        .bind(&pairs)
        .bind(&prompts)
        .bind(&model_pairs)
        .bind(&images_a)
        .bind(&images_b)
        .bind(&broken)
        .bind(&issuers)
        .bind(&since)
        .fetch_all(pool)
        .await?;
    let mut outcomes: Vec<Stored> = (0..n).map(|_| Stored::Refused).collect();
    for row in rows {
        let Some(slot) = usize::try_from(row.n - 1)
            .ok()
            .and_then(|i| outcomes.get_mut(i))
        else {
            return Err(DbError::Corrupt(format!("issued row {} of {n}", row.n)));
        };
        *slot = if row.stored {
            Stored::Stored(Box::new(row.issued))
        } else if row.seen && !row.has_open {
            Stored::Seen
        } else {
            // Open in the database, stored for an earlier request of the batch, or a race
            // lost to another transaction: reading the participant again tells which.
            Stored::AlreadyOpen
        };
    }
    Ok(outcomes)
}
