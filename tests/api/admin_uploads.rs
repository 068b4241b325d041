//! No server paths from the browser except inside the roots: forms naming `/etc`,
//! `/etc/passwd`, the data dir's `secret.key` or a symlink out of a root are refused with
//! nothing imported or shown; prompts and images arrive as uploads instead, and archives
//! with a zip-slip entry or a zip bomb are refused with nothing stored.

use std::io::Write;
use std::path::Path;

use reqwest::multipart::{Form, Part};

use crate::common::{csrf_of, write_manifest_dir, TestApp};

/// Every way of naming something outside the roots that a test app offers.
fn forbidden_paths(app: &TestApp) -> Vec<String> {
    let data = app.data_dir.path();
    let out_link = data.join("escape");
    std::os::unix::fs::symlink("/etc", &out_link).expect("symlink to /etc");
    let key_link = data.join("key-link");
    std::os::unix::fs::symlink(data.join("secret.key"), &key_link).expect("symlink to key");
    [
        "/etc".to_string(),
        "/etc/passwd".to_string(),
        data.join("secret.key").to_string_lossy().to_string(),
        data.to_string_lossy().to_string(),
        out_link.to_string_lossy().to_string(),
        out_link.join("passwd").to_string_lossy().to_string(),
        key_link.to_string_lossy().to_string(),
        format!("{}/../../etc", data.display()),
    ]
    .to_vec()
}

fn assert_refused_page(status: u16, body: &str, path: &str) {
    assert_eq!(status, 422, "{path}: {body}");
    assert!(body.contains("not inside the folders"), "{path}: {body}");
    // Nothing of the file is shown: no line of /etc/passwd, no hex of the key.
    assert!(!body.contains("root:x:0:0"), "{path}: {body}");
}

#[tokio::test]
async fn forms_naming_server_paths_outside_the_roots_are_refused() {
    let app = TestApp::spawn().await;
    app.create_study("s1", 3, 0.0).await;
    app.login(&app.client).await;
    let secret = std::fs::read_to_string(app.data_dir.path().join("secret.key")).expect("key");
    let (_, page) = app.page("/admin/models").await;
    let csrf = csrf_of(&page);
    for path in forbidden_paths(&app) {
        let (status, body) = app.register_model("stolen", &path).await;
        assert_refused_page(status, &body, &path);
        assert!(!body.contains(secret.trim()), "{path}");

        let resp = app
            .post_form(
                "/admin/studies/s1/images",
                &[("csrf", csrf.as_str()), ("dir", path.as_str())],
            )
            .await;
        let status = resp.status().as_u16();
        assert_refused_page(status, &resp.text().await.expect("body"), &path);

        let resp = app
            .post_form(
                "/admin/distill",
                &[
                    ("csrf", csrf.as_str()),
                    ("teacher", "t"),
                    ("student", "s"),
                    ("plan", "vega"),
                    ("data", path.as_str()),
                    ("steps", "6"),
                    ("batch_size", "2"),
                    ("grad_accum", "1"),
                    ("lr", "0.0001"),
                    ("weight_decay", "0"),
                    ("warmup", "0"),
                    ("max_grad_norm", "1"),
                    ("lambda_task", "1"),
                    ("lambda_out", "0.5"),
                    ("lambda_feat", "0.5"),
                    ("resolution", "64"),
                    ("held_out", "2"),
                    ("eval_every", "3"),
                    ("checkpoint_every", "3"),
                    ("seed", "0"),
                ],
            )
            .await;
        let status = resp.status().as_u16();
        assert_refused_page(status, &resp.text().await.expect("body"), &path);
    }
    assert_eq!(app.count("SELECT count(*) FROM models").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM images").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
    // A path inside the root that does not exist says what is missing, as before.
    let (status, body) = app
        .register_model("m", &app.data_dir.path().join("nope").to_string_lossy())
        .await;
    assert_eq!(status, 422);
    assert!(!body.contains("not inside"), "{body}");
}

async fn upload(
    app: &TestApp,
    path: &str,
    csrf: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (u16, String) {
    let form = Form::new()
        .text("csrf", csrf.to_string())
        .part("file", Part::bytes(bytes).file_name(name.to_string()));
    let resp = app
        .client
        .post(app.url(path))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// A zip of `dir`'s files under `prefix/`.
fn zip_dir(dir: &Path, prefix: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        zip.start_file(name, opts).expect("start");
        zip.write_all(&std::fs::read(&path).expect("read"))
            .expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

fn leftovers(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir.path().join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn prompts_and_images_are_uploaded_as_files() {
    let app = TestApp::spawn_configured(|s| s.unpacked_limit = 4 * 1024 * 1024).await;
    app.create_study("up", 3, 0.0).await;
    app.login(&app.client).await;
    let (_, page) = app.page("/admin/studies/up/prompts").await;
    assert!(page.contains("multipart/form-data"), "{page}");
    let csrf = csrf_of(&page);

    let tsv = "Prompt\tCategory\tChallenge\tNote\na red cube\tArtifacts\tColor\t\na cat\tAnimals\tBasic\t\n";
    let (status, body) = upload(
        &app,
        "/admin/studies/up/prompts/upload",
        &csrf,
        "parti.tsv",
        tsv.into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Imported 2 new prompts"), "{body}");
    let (status, body) = upload(
        &app,
        "/admin/studies/up/prompts/upload",
        "forged",
        "p.txt",
        b"x\n".to_vec(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = upload(
        &app,
        "/admin/studies/up/prompts/upload",
        &csrf,
        "bad.txt",
        vec![0xff, 0xfe, b'\n'],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("bad.txt") && body.contains("UTF-8"), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM prompts").await, 2);

    let incoming = app.data_dir.path().join("zip-src");
    write_manifest_dir(&incoming, 2, &["a", "b"]);
    // Zip-slip: an entry that climbs out of the folder. Nothing is imported or written.
    let mut evil = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    evil.start_file("manifest.jsonl", opts).expect("start");
    evil.write_all(b"{}\n").expect("write");
    evil.start_file("../../escaped.png", opts).expect("start");
    evil.write_all(b"not an image").expect("write");
    let evil = evil.finish().expect("zip").into_inner();
    let (status, body) = upload(
        &app,
        "/admin/studies/up/images/upload",
        &csrf,
        "evil.zip",
        evil,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("../../escaped.png") && body.contains("outside"),
        "{body}"
    );
    assert!(!app.data_dir.path().join("escaped.png").exists());

    // Zip bomb: 64 MiB of zeros in a few kilobytes, against a 4 MiB unpacked limit.
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    bomb.start_file("manifest.jsonl", deflated).expect("start");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        bomb.write_all(&zeros).expect("write");
    }
    let bomb = bomb.finish().expect("zip").into_inner();
    assert!(bomb.len() < 1 << 20, "the bomb is small: {}", bomb.len());
    let (status, body) = upload(
        &app,
        "/admin/studies/up/images/upload",
        &csrf,
        "bomb.zip",
        bomb,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("unpacked_limit"), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM images").await, 0);
    assert_eq!(leftovers(&app), 0, "temporary files are removed");

    // A bad manifest line fails the whole upload with its line number.
    std::fs::write(
        incoming.join("manifest.jsonl"),
        std::fs::read_to_string(incoming.join("manifest.jsonl")).expect("manifest")
            + "{\"file\": \"missing.png\", \"model\": \"a\", \"prompt\": \"p\"}\n",
    )
    .expect("append");
    let (status, body) = upload(
        &app,
        "/admin/studies/up/images/upload",
        &csrf,
        "bad.zip",
        zip_dir(&incoming, ""),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("line 5"), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM images").await, 0);

    // The good archive, its files in one top-level folder as `zip -r out.zip out/` makes it.
    let good = app.data_dir.path().join("zip-good");
    write_manifest_dir(&good, 2, &["a", "b"]);
    let (status, body) = upload(
        &app,
        "/admin/studies/up/images/upload",
        &csrf,
        "out.zip",
        zip_dir(&good, "out/"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Imported 4 new images"), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM pairs").await, 2);
    assert_eq!(leftovers(&app), 0, "temporary files are removed");
}

/// The attack of the issue: "Compare with teacher" with `prompts_file=/etc/passwd` or the
/// data dir's `secret.key` used to create a study whose prompts were that file's lines.
#[tokio::test]
async fn the_compare_forms_prompts_file_must_lie_inside_a_root() {
    let app = TestApp::spawn().await;
    app.login(&app.client).await;
    let teacher = app.data_dir.path().join("teacher");
    arenaxl::engine::presets::init_model_folder("tiny-sdxl", &teacher, 3).expect("teacher");
    let (status, _) = app
        .register_model("tiny-teacher", &teacher.to_string_lossy())
        .await;
    assert_eq!(status, 200);
    let data = app.data_dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let mut meta = String::new();
    for i in 0..4 {
        image::RgbImage::from_pixel(16, 16, image::Rgb([i * 50, 0, 0]))
            .save(data.join(format!("{i}.png")))
            .expect("png");
        meta.push_str(&format!(
            "{{\"file_name\": \"{i}.png\", \"text\": \"s{i}\"}}\n"
        ));
    }
    std::fs::write(data.join("metadata.jsonl"), meta).expect("metadata");
    let (_, html) = app.page("/admin/distill").await;
    let csrf = csrf_of(&html);
    let data = data.to_string_lossy().to_string();
    let resp = app
        .post_form(
            "/admin/distill",
            &[
                ("csrf", csrf.as_str()),
                ("teacher", "tiny-teacher"),
                ("student", "tiny-vega"),
                ("plan", "vega"),
                ("data", data.as_str()),
                ("steps", "2"),
                ("batch_size", "1"),
                ("grad_accum", "1"),
                ("lr", "0.0001"),
                ("weight_decay", "0"),
                ("warmup", "0"),
                ("max_grad_norm", "1"),
                ("lambda_task", "1"),
                ("lambda_out", "0.5"),
                ("lambda_feat", "0.5"),
                ("resolution", "64"),
                ("held_out", "1"),
                ("eval_every", "1"),
                ("checkpoint_every", "1"),
                ("seed", "0"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 303, "{:?}", resp.text().await);
    let compare = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string()
        + "/compare";
    let secret = std::fs::read_to_string(app.data_dir.path().join("secret.key")).expect("key");
    let inside = app.data_dir.path().join("prompts.txt");
    std::fs::write(&inside, "a red apple\n").expect("prompts");
    let key = app.data_dir.path().join("secret.key");
    for path in [
        "/etc/passwd",
        &key.to_string_lossy(),
        &format!("{}/../../etc/passwd", app.data_dir.path().display()),
    ] {
        let resp = app
            .post_form(
                &compare,
                &[
                    ("csrf", csrf.as_str()),
                    ("title", "t"),
                    ("slug", "stolen"),
                    ("prompts_file", path),
                    ("max_prompts", "0"),
                    ("seeds", "1"),
                    ("steps", "2"),
                    ("guidance", "3"),
                    ("width", "64"),
                    ("height", "64"),
                    ("dtype", "f32"),
                    ("batch", "1"),
                ],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 422, "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains("not inside the folders"), "{path}: {body}");
        assert!(
            !body.contains("root:x:0:0") && !body.contains(secret.trim()),
            "{path}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM studies").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM prompts").await, 0);
    // A prompts file inside the root gets past the path check (and stops at the unfinished
    // job instead).
    let resp = app
        .post_form(
            &compare,
            &[
                ("csrf", csrf.as_str()),
                ("title", "t"),
                ("slug", "fine"),
                ("prompts_file", &inside.to_string_lossy()),
                ("max_prompts", "0"),
                ("seeds", "1"),
                ("steps", "2"),
                ("guidance", "3"),
                ("width", "64"),
                ("height", "64"),
                ("dtype", "f32"),
                ("batch", "1"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp.text().await.expect("body").contains("not finished"));
}
