//! A finished distillation turned into a study of the student against its teacher: the
//! study, its prompts (a reproducible sample) and the generation jobs for both models, all
//! created in one transaction.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use uuid::Uuid;

use crate::db::generation::{self, ModelRow};
use crate::db::Db;
use crate::domain::content::NewPrompt;
use crate::domain::rules::check_seeds_per_prompt;
use crate::domain::{Study, StudySettings};
use crate::queue::store as q;

use super::distill::{DistillPayload, KIND};
use super::generate::{enqueue_generation, GenerationRequest, Sampling};
use super::{JobError, JobStatus};

/// The teacher and the registered student of a finished distillation job.
pub async fn finished_models(db: &Db, job_id: Uuid) -> Result<(ModelRow, ModelRow), JobError> {
    let job = q::get(&db.pool, job_id).await?;
    if job.kind != KIND {
        return Err(JobError::Invalid(format!(
            "job {job_id} is not a distillation"
        )));
    }
    if job.status != JobStatus::Succeeded {
        return Err(JobError::Invalid(format!(
            "the distillation is {}, not finished",
            job.status
        )));
    }
    let p: DistillPayload = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Invalid(format!("job {job_id} has an unreadable payload: {e}")))?;
    let find = |name: String, what: &'static str| async move {
        generation::model_by_name(&db.pool, &name)
            .await?
            .filter(|m| m.folder.is_some())
            .ok_or_else(|| {
                JobError::Invalid(format!("the {what} '{name}' is no longer registered"))
            })
    };
    let student = find(p.student.clone(), "student").await?;
    let ours = student
        .info
        .as_ref()
        .is_some_and(|i| i["distill_job"].as_str() == Some(job_id.to_string().as_str()));
    if !ours {
        return Err(JobError::Invalid(format!(
            "the model '{}' is no longer this distillation's student",
            p.student
        )));
    }
    Ok((find(p.teacher, "teacher").await?, student))
}

/// A study of a distilled student against its teacher.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub study: StudySettings,
    pub prompts: Vec<NewPrompt>,
    /// Seeds 0..seeds for every prompt.
    pub seeds: i64,
    pub sampling: Sampling,
    pub batch: usize,
}

/// At most `max` prompts (all when 0), optionally only from `categories`: a seeded random
/// sample kept in file order, so that a comparison on 200 PartiPrompts is reproducible.
pub fn choose_prompts(
    prompts: Vec<NewPrompt>,
    categories: &[String],
    max: usize,
    seed: u64,
) -> Result<Vec<NewPrompt>, JobError> {
    let mut chosen: Vec<(usize, NewPrompt)> = prompts
        .into_iter()
        .filter(|p| {
            categories.is_empty()
                || p.category
                    .as_ref()
                    .is_some_and(|c| categories.iter().any(|x| x.eq_ignore_ascii_case(c)))
        })
        .enumerate()
        .collect();
    if chosen.is_empty() {
        return Err(JobError::Invalid(if categories.is_empty() {
            "prompts: none given".into()
        } else {
            format!("prompts: none in the categories {}", categories.join(", "))
        }));
    }
    if max > 0 && chosen.len() > max {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        chosen.shuffle(&mut rng);
        chosen.truncate(max);
        chosen.sort_by_key(|(i, _)| *i);
    }
    Ok(chosen.into_iter().map(|(_, p)| p).collect())
}

/// Creates the study (open, so participants can start as soon as pairs exist), its
/// prompts, and generation jobs for teacher and student, all in one transaction.
pub async fn compare_with_teacher(
    db: &Db,
    job_id: Uuid,
    req: &CompareRequest,
) -> Result<(Study, usize), JobError> {
    let (teacher, student) = finished_models(db, job_id).await?;
    req.sampling.validate()?;
    check_seeds_per_prompt(req.seeds)?;
    if req.prompts.is_empty() {
        return Err(JobError::Invalid("prompts: none given".into()));
    }
    let mut tx = db.pool.begin().await?;
    let study = crate::db::studies::insert(&mut *tx, &req.study).await?;
    let mut prompt_ids = Vec::with_capacity(req.prompts.len());
    for p in &req.prompts {
        let (id, added) = crate::db::content::insert_prompt(&mut tx, study.id, p).await?;
        if added {
            prompt_ids.push(id);
        }
    }
    // It opens itself when the first pair of teacher and student images exists.
    crate::db::studies::open_when_ready(&mut *tx, study.id).await?;
    let (jobs, _) = enqueue_generation(
        &mut tx,
        &GenerationRequest {
            study_id: study.id,
            models: vec![teacher.name.clone(), student.name.clone()],
            prompt_ids,
            seeds: (0..req.seeds).collect(),
            sampling: req.sampling.clone(),
            batch: req.batch,
            priority: 0,
            max_attempts: 3,
        },
    )
    .await?;
    tx.commit().await?;
    let study = crate::db::studies::by_id(&db.pool, study.id).await?;
    Ok((study, jobs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(n: usize) -> Vec<NewPrompt> {
        (0..n)
            .map(|i| NewPrompt {
                text: format!("prompt {i}"),
                category: Some(if i % 2 == 0 { "Animals" } else { "Vehicles" }.into()),
                challenge: None,
                external_id: None,
            })
            .collect()
    }

    #[test]
    fn choosing_prompts_samples_reproducibly_in_file_order() {
        let a = choose_prompts(prompts(50), &[], 10, 0).expect("sample");
        let b = choose_prompts(prompts(50), &[], 10, 0).expect("sample");
        assert_eq!(a, b);
        assert_eq!(a.len(), 10);
        let index = |p: &NewPrompt| p.text[7..].parse::<usize>().expect("index");
        assert!(
            a.windows(2).all(|w| index(&w[0]) < index(&w[1])),
            "file order"
        );
        assert_ne!(
            a,
            choose_prompts(prompts(50), &[], 10, 1).expect("sample"),
            "another seed, another sample"
        );
        assert_eq!(choose_prompts(prompts(5), &[], 0, 0).expect("all").len(), 5);
        assert_eq!(
            choose_prompts(prompts(5), &[], 99, 0).expect("all").len(),
            5
        );
    }

    #[test]
    fn choosing_by_category_ignores_case_and_says_when_none_match() {
        let v = choose_prompts(prompts(10), &["vehicles".into()], 0, 0).expect("some");
        assert_eq!(v.len(), 5);
        assert!(v.iter().all(|p| p.category.as_deref() == Some("Vehicles")));
        let e = choose_prompts(prompts(10), &["Food".into()], 0, 0).expect_err("none");
        assert!(e.to_string().contains("none in the categories Food"), "{e}");
    }
}
