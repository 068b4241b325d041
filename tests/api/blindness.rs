//! Blindness: nothing a participant receives (HTML, JSON, URLs, headers, image bytes)
//! names a model, a seed, a file name or anything else model-specific.

use sha2::{Digest, Sha256};

use crate::common::{hidden, png_chunks, TestApp};

const MODELS: [&str; 3] = ["stable-diffusion-xl", "segmind-ssd-1b", "segmind-vega"];

fn assert_blind(what: &str, text: &str, secrets: &[String]) {
    let lower = text.to_lowercase();
    for s in secrets {
        assert!(
            !lower.contains(&s.to_lowercase()),
            "{what} reveals '{s}':\n{text}"
        );
    }
}

#[tokio::test]
async fn nothing_model_specific_reaches_the_participant() {
    let app = TestApp::spawn().await;
    let study = app.create_study("blind", 6, 0.3).await;
    let dir = app.import_images(&study, 4, &MODELS).await;
    app.open("blind").await;
    let mut secrets: Vec<String> = MODELS.iter().map(|m| m.to_string()).collect();
    // The seed (42) is too short to search for among random ids; its labels are not.
    secrets.extend([
        "seed".to_string(),
        "guidance".to_string(),
        "euler".to_string(),
        "_prompt".to_string(),
    ]);
    // Stored file names and hashes of the originals are secrets too.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".png") {
            secrets.push(name.clone());
            secrets.push(hex::encode(Sha256::digest(
                std::fs::read(entry.path()).unwrap(),
            )));
        }
    }
    let stored: Vec<(String, String)> = sqlx::query_as("SELECT sha256, file FROM images")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    for (sha, file) in stored {
        secrets.push(sha);
        secrets.push(file);
    }

    // Pages, without script, from the link to the end.
    let client = app.new_client();
    let mut seen_text = Vec::new();
    let intro = client
        .get(app.url("/s/blind?PROLIFIC_PID=P1&STUDY_ID=S1&SESSION_ID=X1"))
        .send()
        .await
        .unwrap();
    seen_text.push((
        "intro headers".to_string(),
        format!("{:?}", intro.headers()),
    ));
    seen_text.push(("intro".to_string(), intro.text().await.unwrap()));
    let start = client
        .post(app.url("/s/blind/start"))
        .form(&[("PROLIFIC_PID", "P1")])
        .send()
        .await
        .unwrap();
    seen_text.push((
        "start headers".to_string(),
        format!("{:?}", start.headers()),
    ));
    let mut image_bytes = Vec::new();
    for _ in 0..6 {
        let page = client.get(app.url("/s/blind/vote")).send().await.unwrap();
        seen_text.push(("page headers".to_string(), format!("{:?}", page.headers())));
        let html = page.text().await.unwrap();
        let assignment = hidden(&html, "assignment_id").unwrap();
        for side in ["left", "right"] {
            let url = format!("/img/{assignment}/{side}");
            assert!(html.contains(&url));
            let img = client.get(app.url(&url)).send().await.unwrap();
            seen_text.push(("image headers".to_string(), format!("{:?}", img.headers())));
            image_bytes.push(img.bytes().await.unwrap().to_vec());
        }
        let n = image_bytes.len();
        assert_eq!(
            image_bytes[n - 1].len(),
            image_bytes[n - 2].len(),
            "both sides are served with the same length"
        );
        seen_text.push(("vote page".to_string(), html));
        let voted = client
            .post(app.url("/s/blind/vote"))
            .form(&[("assignment_id", assignment.as_str()), ("choice", "left")])
            .send()
            .await
            .unwrap();
        seen_text.push(("vote headers".to_string(), format!("{:?}", voted.headers())));
    }
    let done = client
        .get(app.url("/s/blind/done"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    seen_text.push(("done".to_string(), done));

    // The JSON API.
    let token = app.join("blind", "P2").await;
    for _ in 0..6 {
        let resp = app
            .client
            .get(app.url("/api/v1/next"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        seen_text.push(("api headers".to_string(), format!("{:?}", resp.headers())));
        let body = resp.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        seen_text.push(("api next".to_string(), body));
        let id = json["assignment_id"].as_str().unwrap().to_string();
        let vote = app.vote(&token, &id, "right").await;
        seen_text.push(("api vote".to_string(), vote.text().await.unwrap()));
    }
    for (what, text) in &seen_text {
        assert_blind(what, text, &secrets);
    }
    // Image bytes: fresh PNGs with pixel data only, no text/EXIF/time chunks; the one
    // extra chunk is the random padding that gives both sides the same length.
    for bytes in &image_bytes {
        let chunks = png_chunks(bytes);
        assert!(
            chunks
                .iter()
                .all(|c| ["IHDR", "IDAT", "IEND", "paDd"].contains(&c.as_str())),
            "extra PNG chunks: {chunks:?}"
        );
        assert_blind(
            "image bytes",
            &String::from_utf8_lossy(bytes),
            &MODELS.map(String::from),
        );
    }
}
