//! Importing prompts and images: the supported formats, and errors that name the line and
//! leave nothing half-imported.

use arenaxl::study::images::import_dir;
use arenaxl::study::prompts::{import_prompts, parse_prompts, PromptFormat};

use crate::common::{write_manifest_dir, TestApp};

#[tokio::test]
async fn partiprompts_import_keeps_categories_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let study = app.create_study("parti", 10, 0.0).await;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/PartiPrompts.tsv");
    let content = std::fs::read_to_string(&path)
        .expect("../shared/data/PartiPrompts.tsv is beside the checkout");
    let prompts = parse_prompts(
        "PartiPrompts.tsv",
        &content,
        PromptFormat::detect("PartiPrompts.tsv", &content),
    )
    .unwrap();
    assert_eq!(prompts.len(), 1632);
    let first = import_prompts(&app.db, &study, &prompts).await.unwrap();
    // PartiPrompts repeats a few prompts verbatim; they are stored once.
    assert!(first.added > 1600, "{first:?}");
    let again = import_prompts(&app.db, &study, &prompts).await.unwrap();
    assert_eq!(again.added, 0);
    assert_eq!(
        app.count("SELECT count(DISTINCT category) FROM prompts")
            .await,
        12
    );
}

async fn import_error(app: &TestApp, slug: &str, edit: impl FnOnce(&std::path::Path)) -> String {
    let study = app.create_study(slug, 3, 0.0).await;
    let dir = app.data_dir.path().join(slug);
    write_manifest_dir(&dir, 2, &["a", "b"]);
    edit(&dir);
    let err = import_dir(&app.db, &study, &dir, &app.store)
        .await
        .expect_err("import must fail")
        .to_string();
    let images: i64 = sqlx::query_scalar("SELECT count(*) FROM images WHERE study_id = $1")
        .bind(study.id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(images, 0, "a failed import left images behind: {err}");
    let prompts: i64 = sqlx::query_scalar("SELECT count(*) FROM prompts WHERE study_id = $1")
        .bind(study.id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(prompts, 0, "a failed import left prompts behind: {err}");
    err
}

fn append(dir: &std::path::Path, line: &str) {
    let path = dir.join("manifest.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(line);
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn bad_manifest_lines_fail_the_whole_import_with_their_line_number() {
    let app = TestApp::spawn().await;
    let err = import_error(&app, "missing-file", |d| {
        append(d, r#"{"file":"nope.png","model":"a","prompt":"p"}"#)
    })
    .await;
    assert!(err.contains("line 5") && err.contains("nope.png"), "{err}");
    let err = import_error(&app, "bad-type", |d| {
        append(
            d,
            r#"{"file":"a_prompt0_seed42.png","model":"a","prompt":"p","seed":"forty"}"#,
        )
    })
    .await;
    assert!(
        err.contains("line 5") && err.contains("invalid type"),
        "{err}"
    );
    let err = import_error(&app, "unknown-field", |d| {
        append(
            d,
            r#"{"file":"a_prompt0_seed42.png","model":"a","prompt":"p","colour":1}"#,
        )
    })
    .await;
    assert!(err.contains("line 5") && err.contains("colour"), "{err}");
    let err = import_error(&app, "not-an-image", |d| {
        std::fs::write(d.join("junk.png"), b"this is not a png").unwrap();
        append(d, r#"{"file":"junk.png","model":"c","prompt":"p"}"#);
    })
    .await;
    assert!(err.contains("line 5") && err.contains("junk.png"), "{err}");
    let err = import_error(&app, "escape", |d| {
        append(d, r#"{"file":"../../etc/passwd","model":"a","prompt":"p"}"#)
    })
    .await;
    assert!(
        err.contains("line 5") && err.contains("inside the folder"),
        "{err}"
    );
    let err = import_error(&app, "duplicate", |d| {
        append(d, r#"{"file":"a_prompt1_seed42.png","model":"a","prompt":"test prompt number 0","seed":42}"#)
    })
    .await;
    assert!(
        err.contains("line 5") && err.contains("first on line 1"),
        "{err}"
    );
    let err = import_error(&app, "not-json", |d| append(d, "{oops")).await;
    assert!(err.contains("line 5"), "{err}");
    let err = import_error(&app, "no-manifest", |d| {
        std::fs::remove_file(d.join("manifest.jsonl")).unwrap()
    })
    .await;
    assert!(err.contains("manifest.jsonl"), "{err}");
}

#[tokio::test]
async fn images_of_different_models_on_a_prompt_and_seed_form_pairs() {
    let app = TestApp::spawn().await;
    let study = app.create_study("pairs", 3, 0.0).await;
    let dir = app.data_dir.path().join("pairs");
    write_manifest_dir(&dir, 2, &["a", "b", "c"]);
    // A third seed of model a on prompt 0 that no other model has: no pair for it.
    std::fs::copy(dir.join("a_prompt0_seed42.png"), dir.join("lonely.png")).unwrap();
    append(
        &dir,
        r#"{"file":"lonely.png","model":"a","prompt":"test prompt number 0","seed":7}"#,
    );
    let count = import_dir(&app.db, &study, &dir, &app.store).await.unwrap();
    assert_eq!(count.images_added, 7);
    assert_eq!(count.pairs_total, 6, "2 prompts x 3 model pairs");
    // Importing the same folder again stores nothing twice.
    let again = import_dir(&app.db, &study, &dir, &app.store).await.unwrap();
    assert_eq!(
        (again.images_added, again.images_existing, again.pairs_total),
        (0, 7, 6)
    );
    // Stored once per content, re-encoded without the original's text chunk.
    let (file,): (String,) = sqlx::query_as("SELECT file FROM images LIMIT 1")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let bytes = std::fs::read(app.store.path(&file)).unwrap();
    assert!(!crate::common::png_chunks(&bytes).contains(&"tEXt".to_string()));
}

#[tokio::test]
async fn cli_prompt_files_in_each_format() {
    let csv = parse_prompts("p.csv", "prompt,category\n\"a, b\",X\n", PromptFormat::Csv).unwrap();
    assert_eq!(
        (csv[0].text.as_str(), csv[0].category.as_deref()),
        ("a, b", Some("X"))
    );
    let txt = parse_prompts(
        "p.txt",
        "one\ntwo\n",
        PromptFormat::detect("p.txt", "one\ntwo\n"),
    )
    .unwrap();
    assert_eq!(txt.len(), 2);
    let err = parse_prompts("p.csv", "prompt,category\nfine,X\n,Y\n", PromptFormat::Csv)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("p.csv line 3") && err.contains("empty"),
        "{err}"
    );
}
