//! The generation CLI end to end against a fresh database: `jobs register-model`,
//! `jobs generate`, `jobs list`, `worker --exit-when-idle`, `jobs cancel`/`retry` errors.

mod common;

use std::process::{Command, Output};

use arenaxl::study::prompts::{import_prompts, NewPrompt};
use arenaxl::study::{StudyForm, StudySettings};

fn arenaxl(url: &str, data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env_remove("ARENAXL_MODELS_DIR")
        .output()
        .expect("run arenaxl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn register_queue_and_run_from_the_command_line() {
    let t = common::fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("vega");
    arenaxl::engine::presets::init_model_folder("tiny-vega", &model, 5).expect("preset");
    let settings = StudySettings::try_from(StudyForm {
        slug: "cli".into(),
        title: "CLI".into(),
        ..StudyForm::default()
    })
    .expect("settings");
    let study = arenaxl::db::studies::insert(&t.db.pool, &settings)
        .await
        .expect("study");
    let prompts: Vec<NewPrompt> = ["a fox", "a boat"]
        .iter()
        .map(|p| NewPrompt {
            text: p.to_string(),
            category: None,
            challenge: None,
            external_id: None,
        })
        .collect();
    import_prompts(&t.db, &study, &prompts)
        .await
        .expect("prompts");

    let out = arenaxl(
        &t.url,
        tmp.path(),
        &[
            "jobs",
            "register-model",
            "--name",
            "vega",
            "--folder",
            &model.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("weights sha256"), "{}", text(&out));

    let gen = [
        "jobs", "generate", "--study", "cli", "--seeds", "1", "--steps", "2", "--width", "64",
        "--height", "64", "--dtype", "f32", "--batch", "1",
    ];
    let mut unknown = gen.to_vec();
    unknown.extend(["--models", "nope"]);
    let out = arenaxl(&t.url, tmp.path(), &unknown);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("'nope' is not a registered model"),
        "{}",
        text(&out)
    );
    let mut ok = gen.to_vec();
    ok.extend(["--models", "vega"]);
    let out = arenaxl(&t.url, tmp.path(), &ok);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 jobs (2 new)"), "{}", text(&out));
    let out = arenaxl(&t.url, tmp.path(), &ok);
    assert!(
        text(&out).contains("2 jobs (0 new)"),
        "idempotent: {}",
        text(&out)
    );

    let out = arenaxl(
        &t.url,
        tmp.path(),
        &["worker", "--exit-when-idle", "--poll-ms", "50"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 succeeded"), "{}", text(&out));
    let out = arenaxl(&t.url, tmp.path(), &["jobs", "list"]);
    assert_eq!(text(&out).matches("succeeded").count(), 2, "{}", text(&out));
    let images: i64 = sqlx::query_scalar("SELECT count(*) FROM images")
        .fetch_one(&t.db.pool)
        .await
        .expect("count");
    assert_eq!(images, 2);

    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM jobs LIMIT 1")
        .fetch_one(&t.db.pool)
        .await
        .expect("id");
    let out = arenaxl(&t.url, tmp.path(), &["jobs", "cancel", &id.to_string()]);
    assert!(
        !out.status.success() && text(&out).contains("not queued or running"),
        "{}",
        text(&out)
    );
    let out = arenaxl(&t.url, tmp.path(), &["jobs", "retry", &id.to_string()]);
    assert!(
        !out.status.success() && text(&out).contains("not failed or cancelled"),
        "{}",
        text(&out)
    );
}
