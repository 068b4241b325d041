//! The distillation part of a job's page: loss curves and held-out figures, the teacher
//! and student, and the "compare with teacher" form once the student is registered.

use crate::db::distill as dq;
use crate::db::generation;
use crate::domain::DEFAULT_SAMPLING;
use crate::jobs::distill::DistillPayload;
use crate::jobs::{Job, JobStatus};
use crate::report::render::svg::{line_chart, Series};
use crate::web::state::AppState;

use super::auth::AdminError;
use super::forms::{field, Fields};

/// What a distillation's job page adds: curves, held-out figures, the student, and the
/// "compare with teacher" form once the student is registered.
pub struct DistillView {
    pub loss_svg: String,
    pub eval_svg: String,
    pub evals: Vec<(i32, i64, String, String)>,
    pub teacher: String,
    pub student: String,
    pub student_ready: bool,
    pub form: Fields,
    pub error: Option<String>,
}

impl DistillView {
    pub fn value(&self, name: &str) -> &str {
        field(&self.form, name)
    }
}

pub fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(60).collect()
}

fn compare_defaults(teacher: &str, student: &str) -> Fields {
    [
        ("title", format!("{student} vs {teacher}")),
        ("slug", slugify(&format!("{student}-vs-{teacher}"))),
        ("prompts_file", String::new()),
        ("prompts_text", String::new()),
        ("categories", String::new()),
        ("max_prompts", "200".into()),
        ("seeds", "1".into()),
        ("steps", DEFAULT_SAMPLING.steps.to_string()),
        ("guidance", DEFAULT_SAMPLING.guidance.to_string()),
        ("scheduler", String::new()),
        ("width", DEFAULT_SAMPLING.width.to_string()),
        ("height", DEFAULT_SAMPLING.height.to_string()),
        ("dtype", DEFAULT_SAMPLING.dtype.into()),
        ("batch", "8".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

const COLOURS: [&str; 5] = ["#1f4e79", "#c0504d", "#4f8f3a", "#8064a2", "#d08c00"];

/// The curves of a job: training loss components per stage, and held-out MSEs.
pub async fn distill_view_of(
    state: &AppState,
    job: &Job,
    form: Option<Fields>,
    error: Option<String>,
) -> Result<DistillView, AdminError> {
    let points = dq::points(&state.db.pool, job.id).await?;
    // Steps restart at each stage; the x axis runs on across stages, each stage starting
    // after the steps the earlier ones were given.
    let offset: Vec<i64> = serde_json::from_value::<DistillPayload>(job.payload.clone())
        .map(|p| p.stages.offsets(&p.train))
        .unwrap_or_default()
        .into_iter()
        .map(|o| o as i64)
        .collect();
    let x = |p: &dq::Point| (offset.get(p.stage as usize).copied().unwrap_or(0) + p.step) as f64;
    let series = |kind: &str, keys: &[(&str, &str)]| -> Vec<Series> {
        keys.iter()
            .enumerate()
            .map(|(i, (key, name))| Series {
                name: name.to_string(),
                colour: COLOURS[i % COLOURS.len()],
                points: points
                    .iter()
                    .filter(|p| p.kind == kind)
                    .filter_map(|p| p.data[*key].as_f64().map(|v| (x(p), v)))
                    .collect(),
            })
            .collect()
    };
    let loss = series(
        "train",
        &[
            ("loss", "total"),
            ("task", "task"),
            ("output", "output"),
            ("features", "features"),
        ],
    );
    let eval = series(
        "eval",
        &[("output_mse", "output MSE"), ("feature_mse", "feature MSE")],
    );
    let evals = points
        .iter()
        .filter(|p| p.kind == "eval")
        .map(|p| {
            let f = |k: &str| {
                p.data[k]
                    .as_f64()
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default()
            };
            (p.stage + 1, p.step, f("output_mse"), f("feature_mse"))
        })
        .collect();
    let teacher = job.payload["teacher"].as_str().unwrap_or("?").to_string();
    let student = job.payload["student"].as_str().unwrap_or("?").to_string();
    let student_ready = job.status == JobStatus::Succeeded
        && generation::model_by_name(&state.db.pool, &student)
            .await?
            .and_then(|m| m.info)
            .is_some_and(|i| i["distill_job"].as_str() == Some(job.id.to_string().as_str()));
    Ok(DistillView {
        loss_svg: if points.iter().any(|p| p.kind == "train") {
            line_chart(&loss, "Training loss per step", "step")
        } else {
            String::new()
        },
        eval_svg: if points.iter().any(|p| p.kind == "eval") {
            line_chart(&eval, "Held-out MSE against the teacher", "step")
        } else {
            String::new()
        },
        evals,
        form: form.unwrap_or_else(|| compare_defaults(&teacher, &student)),
        teacher,
        student,
        student_ready,
        error,
    })
}
