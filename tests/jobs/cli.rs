//! The jobs CLI end to end against a fresh database: `jobs register-model`,
//! `jobs generate`, `jobs list`, `worker --exit-when-idle`, `jobs cancel`/`retry` errors, and
//! `jobs distill` → `worker --kinds distill` → `jobs compare`.

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
    let t = crate::common::fresh_db().await;
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

#[tokio::test]
async fn distil_and_compare_from_the_command_line() {
    let t = crate::common::fresh_db().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let teacher = tmp.path().join("teacher");
    arenaxl::engine::presets::init_model_folder("tiny-sdxl", &teacher, 5).expect("preset");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let mut meta = String::new();
    for i in 0..4u32 {
        image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 8) as u8, (i * 60) as u8])
        })
        .save(data.join(format!("{i}.png")))
        .expect("png");
        meta.push_str(&format!(
            "{{\"file_name\": \"{i}.png\", \"text\": \"sample {i}\"}}\n"
        ));
    }
    std::fs::write(data.join("metadata.jsonl"), meta).expect("metadata");
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(&prompts, "a fox\na boat\na red house\n").expect("prompts");
    let out = arenaxl(
        &t.url,
        tmp.path(),
        &[
            "jobs",
            "register-model",
            "--name",
            "teacher",
            "--folder",
            &teacher.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let data = data.to_string_lossy().to_string();
    let distill = |extra: &[&str]| {
        let mut args = vec![
            "jobs",
            "distill",
            "--teacher",
            "teacher",
            "--student",
            "student",
            "--plan",
            "vega",
            "--data",
            &data,
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--resolution",
            "32",
            "--dtype",
            "f32",
        ];
        args.extend_from_slice(extra);
        arenaxl(&t.url, tmp.path(), &args)
    };
    let out = distill(&["--lr", "2", "--held-out", "1"]);
    assert!(
        !out.status.success() && text(&out).contains("lr must be"),
        "{}",
        text(&out)
    );
    let out = distill(&["--held-out", "4"]);
    assert!(
        !out.status.success() && text(&out).contains("leaves none"),
        "{}",
        text(&out)
    );
    let out = distill(&["--held-out", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let job = text(&out)
        .split_whitespace()
        .nth(2)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .expect("the job id is printed");

    let compare = [
        "jobs",
        "compare",
        "--slug",
        "student-vs-teacher",
        "--title",
        "Student vs teacher",
        "--max-prompts",
        "2",
        "--steps",
        "2",
        "--width",
        "32",
        "--height",
        "32",
        "--dtype",
        "f32",
        "--batch",
        "1",
    ];
    let mut early = compare.to_vec();
    let job_s = job.to_string();
    let prompts_s = prompts.to_string_lossy().to_string();
    early.extend(["--job", &job_s, "--prompts", &prompts_s]);
    let out = arenaxl(&t.url, tmp.path(), &early);
    assert!(
        !out.status.success() && text(&out).contains("not finished"),
        "{}",
        text(&out)
    );

    let out = arenaxl(
        &t.url,
        tmp.path(),
        &[
            "worker",
            "--kinds",
            "distill",
            "--exit-when-idle",
            "--poll-ms",
            "50",
        ],
    );
    assert!(
        out.status.success() && text(&out).contains("1 succeeded"),
        "{}",
        text(&out)
    );
    let out = arenaxl(&t.url, tmp.path(), &early);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("study student-vs-teacher created: 2 prompts, 4 generation jobs"),
        "{}",
        text(&out)
    );
    let out = arenaxl(
        &t.url,
        tmp.path(),
        &["worker", "--exit-when-idle", "--poll-ms", "50"],
    );
    assert!(
        out.status.success() && text(&out).contains("4 succeeded"),
        "{}",
        text(&out)
    );
    let pairs: i64 = sqlx::query_scalar("SELECT count(*) FROM pairs")
        .fetch_one(&t.db.pool)
        .await
        .expect("count");
    assert_eq!(pairs, 2);
    let status: String =
        sqlx::query_scalar("SELECT status FROM studies WHERE slug = 'student-vs-teacher'")
            .fetch_one(&t.db.pool)
            .await
            .expect("status");
    assert_eq!(status, "open", "opened by its first pair");
}
