//! End-to-end browser test: headless Chromium, driven over WebDriver by chromedriver, takes
//! a study as a Prolific participant, once on a 1366x657 laptop screen with the keyboard and
//! once on a 390x844 phone (Chrome's emulation) by tapping, reaches the completion page, and
//! the database then holds exactly the votes given, for the images that were shown.
//!
//! On every comparison page the prompt, both images (side by side) and every answer button
//! must lie inside the viewport, by their bounding boxes, with nothing to scroll. One page's
//! images are held back (by `webdriver::gate`) to check that an answer given before both
//! images are there is not taken, and a key held down until it auto-repeats votes once.
//! A screenshot of the first comparison at each size is left in `target/tmp/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`); `CHROMIUM` and `CHROMEDRIVER` override the binaries' paths.

mod common;
mod webdriver;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use common::TestApp;
use webdriver::gate::ImageGate;
use webdriver::layout::{check_layout, LAYOUT};
use webdriver::page::{is_comparison, is_completion, wait_for, wait_until, IMAGE_HASHES, SNAPSHOT};
use webdriver::{binary, Browser, ChromeDriver, Key, Screen, ARROW_RIGHT, KEY_LEFT, KEY_RIGHT};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A served PNG without its random padding chunk: the stored file's bytes.
fn without_padding(png: &[u8]) -> Vec<u8> {
    let mut out = png[..8.min(png.len())].to_vec();
    let mut o = 8;
    while o + 12 <= png.len() {
        let len = u32::from_be_bytes([png[o], png[o + 1], png[o + 2], png[o + 3]]) as usize;
        let end = (o + 12 + len).min(png.len());
        if &png[o + 4..o + 8] != b"paDd" {
            out.extend_from_slice(&png[o..end]);
        }
        o = end;
    }
    out
}

const LONG_PROMPT: &str = ": a photorealistic portrait of an elderly fisherman mending a net on a \
    wooden pier at sunrise, soft golden light, mist over the harbour, seagulls in the distance, \
    shot on 35 mm film, shallow depth of field";
const NOTICE: &str = "This study closes on Friday at 18:00 UTC.";

/// How the participant answers one comparison.
enum Answer {
    /// These keys, pressed and released one after the other at once (one WebDriver command,
    /// so that a second key reaches the page the first one answered).
    Keys(&'static [&'static str]),
    /// This key held down: it auto-repeats, also once the next pair is on screen.
    HoldDown(&'static Key),
    /// A tap on the button with this value.
    Tap(&'static str),
}

struct Step {
    answer: Answer,
    /// The vote that must be stored.
    choice: &'static str,
    /// What happens to this page's images on the way.
    images: Images,
    /// Answer this page with JavaScript turned off: plain HTML buttons.
    no_script: bool,
}

#[derive(PartialEq)]
enum Images {
    Arrive,
    /// Held back while the test tries to answer before they arrive.
    Late,
    /// They fail at first: no answer counts until a reload brings them.
    Fail,
}

const fn step(answer: Answer, choice: &'static str) -> Step {
    Step {
        answer,
        choice,
        images: Images::Arrive,
        no_script: false,
    }
}

const fn with(answer: Answer, choice: &'static str, images: Images, no_script: bool) -> Step {
    Step {
        answer,
        choice,
        images,
        no_script,
    }
}

/// Every key at least once; "1" then "2" at once must vote left, once.
const LAPTOP: [Step; 8] = [
    step(Answer::Keys(&[KEY_LEFT]), "left"),
    with(Answer::Keys(&[KEY_RIGHT]), "right", Images::Late, false),
    step(Answer::Keys(&["1", "2"]), "left"),
    with(Answer::Keys(&["2"]), "right", Images::Fail, false),
    step(Answer::Keys(&["3"]), "tie"),
    step(Answer::HoldDown(&ARROW_RIGHT), "right"),
    step(Answer::Keys(&["4"]), "both_bad"),
    step(Answer::Keys(&[KEY_LEFT]), "left"),
];

const PHONE: [Step; 4] = [
    step(Answer::Tap("left"), "left"),
    with(Answer::Tap("right"), "right", Images::Late, false),
    with(Answer::Tap("tie"), "tie", Images::Arrive, true),
    step(Answer::Tap("both_bad"), "both_bad"),
];

async fn answer(browser: &Browser, answer: &Answer) {
    match answer {
        Answer::Keys(keys) => browser.press(keys).await,
        Answer::HoldDown(key) => {
            browser.key_down(key, false).await;
            browser.key_down(key, true).await;
            browser.key_down(key, true).await;
        }
        Answer::Tap(value) => {
            browser
                .click(&format!("#vote-form button[value=\"{value}\"]"))
                .await
        }
    }
}

/// One comparison page as the participant saw and answered it.
#[derive(Debug)]
struct Shown {
    assignment: Uuid,
    choice: &'static str,
    left_sha: String,
    right_sha: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prolific_participant_votes_with_the_keyboard_on_a_1366x657_laptop_screen() {
    let screen = Screen {
        width: 1366,
        height: 657,
        phone: false,
    };
    let small = Screen {
        width: 1280,
        height: 720,
        ..screen
    };
    take_the_study(screen, small, &LAPTOP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prolific_participant_votes_by_tapping_on_a_390x844_phone() {
    let screen = Screen {
        width: 390,
        height: 844,
        phone: true,
    };
    let landscape = Screen {
        width: 844,
        height: 390,
        ..screen
    };
    take_the_study(screen, landscape, &PHONE).await;
}

/// Takes the study at `screen`; the first comparison is also checked (and photographed) at
/// `also`, a second size of the same device (another window size, the phone turned).
async fn take_the_study(screen: Screen, also: Screen, steps: &[Step]) {
    let chromium = binary("CHROMIUM", "/usr/bin/chromium");
    let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
    let scratch = tempfile::tempdir().expect("temp dir");
    let profile = scratch.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");

    // Gold checks (a quarter) may show a broken image.
    let votes = steps.len();
    let app = TestApp::spawn().await;
    app.ready_study(
        "browser",
        votes as i32,
        0.25,
        4,
        &["alpha", "beta", "gamma"],
    )
    .await;
    // A prompt of a real study's length and a notice line, so that the layout is checked
    // with text that wraps, not only with "test prompt number 1".
    for (sql, text) in [
        ("UPDATE prompts SET text = text || $1", LONG_PROMPT),
        ("UPDATE studies SET notice = $1", NOTICE),
    ] {
        sqlx::query(sql)
            .bind(text)
            .execute(&app.db.pool)
            .await
            .expect("lengthen prompts, set a notice");
    }
    let gate = ImageGate::start(&app.url("")).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let mut driver = ChromeDriver::start(&chromedriver, &scratch.path().join("chromedriver.log"));
    driver.wait_ready(&http).await;
    let browser =
        Browser::new_session(&mut driver, http.clone(), &chromium, &profile, screen).await;

    let pid = format!("pid{}", Uuid::new_v4().simple());
    let votes_stored = || async {
        app.count(&format!(
            "SELECT count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id \
             JOIN participants p ON p.id = a.participant_id WHERE p.prolific_pid = '{pid}'"
        ))
        .await
    };
    browser
        .goto(&gate.url(&format!(
            "/s/browser?PROLIFIC_PID={pid}&STUDY_ID=study-b&SESSION_ID=session-b"
        )))
        .await;
    wait_for(&browser, "the instructions page", |s| s["start"] == true).await;
    if steps[0].images == Images::Late {
        gate.hold();
    }
    browser.click("#start").await;

    let mut shown: Vec<Shown> = Vec::new();
    let mut previous: Option<String> = None;
    // The page answered after its images were held back, and when they were let through.
    let mut slow: Option<(usize, Instant)> = None;
    let mut slow_answered: Option<Duration> = None;
    for (i, step) in steps.iter().enumerate() {
        let what = format!("comparison {} at {}", i + 1, screen.name());
        let new_page = |s: &Value| {
            let intro = i == 0 && s["start"] == true;
            let moving =
                s["ready"] != "complete" || s["assignment"].as_str() == previous.as_deref();
            assert!(
                is_comparison(s) || intro || moving,
                "expected {what} of {votes}, got: {s}"
            );
            is_comparison(s) && s["assignment"].as_str() != previous.as_deref()
        };
        if step.images == Images::Late {
            // The page is there, its images are not: an answer now must not count.
            let early = wait_until(&browser, &what, &new_page).await;
            assert!(
                early["left"]["complete"] == false || early["right"]["complete"] == false,
                "the images were not held back: {early}"
            );
            assert_eq!(
                early["enabled"], 0,
                "buttons usable before the images: {early}"
            );
            match &step.answer {
                // A click on a disabled button may be refused by WebDriver: also not a vote.
                Answer::Tap(value) => {
                    let css = format!("#vote-form button[value=\"{value}\"]");
                    let element = browser.find(&css).await;
                    let _ = browser
                        .command(
                            reqwest::Method::POST,
                            &format!("/element/{element}/click"),
                            Some(json!({})),
                        )
                        .await;
                }
                other => answer(&browser, other).await,
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let still = browser
                .script(SNAPSHOT)
                .await
                .expect("page after early answer");
            assert_eq!(
                still["assignment"], early["assignment"],
                "answered early: {still}"
            );
            assert_eq!(
                votes_stored().await,
                i as i64,
                "a vote before the images loaded"
            );
            assert!(gate.waiting() > 0, "no image request was held back");
            gate.release();
            slow = Some((i, Instant::now()));
        }
        if step.images == Images::Fail {
            let broken =
                wait_for(&browser, &what, |s| new_page(s) && s["image_error"] == true).await;
            assert_eq!(
                broken["enabled"], 0,
                "buttons usable without the images: {broken}"
            );
            answer(&browser, &step.answer).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let still = browser.script(SNAPSHOT).await.expect("page after answer");
            assert_eq!(
                still["assignment"], broken["assignment"],
                "answered: {still}"
            );
            assert_eq!(votes_stored().await, i as i64, "a vote without the images");
            gate.fail_images(false);
            browser.click("#image-error a").await;
        }
        let snap = wait_for(&browser, &what, |s| {
            new_page(s)
                && s["left"]["complete"] == true
                && s["right"]["complete"] == true
                && s["enabled"] == s["buttons"]
        })
        .await;
        if i > 0 {
            if let Answer::HoldDown(key) = &steps[i - 1].answer {
                // The key that answered the last page is still down and repeating.
                for _ in 0..3 {
                    browser.key_down(key, true).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let still = browser.script(SNAPSHOT).await.expect("page after repeats");
                assert_eq!(
                    still["assignment"], snap["assignment"],
                    "auto-repeat voted: {still}"
                );
                assert_eq!(votes_stored().await, i as i64, "auto-repeat voted");
                browser.key_up(key).await;
            }
        }
        let assignment = snap["assignment"]
            .as_str()
            .expect("assignment id")
            .to_string();
        assert_eq!(
            snap["progress"],
            format!("{} / {votes}", i + 1),
            "progress: {snap}"
        );
        assert!(
            snap["prompt"]
                .as_str()
                .is_some_and(|p| p.contains("test prompt number")),
            "prompt: {snap}"
        );
        for side in ["left", "right"] {
            assert_eq!(
                snap[side]["width"], 32,
                "the {side} image did not render: {snap}"
            );
        }
        let layout = browser.script(LAYOUT).await.expect("layout script");
        check_layout(&layout, screen, i + 1);

        let left_src = snap["left"]["src"].as_str().expect("left src").to_string();
        let right_src = snap["right"]["src"]
            .as_str()
            .expect("right src")
            .to_string();
        assert_eq!(left_src, gate.url(&format!("/img/{assignment}/left")));
        assert_eq!(right_src, gate.url(&format!("/img/{assignment}/right")));

        // The bytes the browser got, hashed in the page (padding taken out), and the same
        // URL fetched again: other padding bytes, the same length on both sides.
        let hashes = browser.script_async(IMAGE_HASHES).await;
        assert!(
            hashes["error"].is_null(),
            "hashing images in the page failed: {hashes}"
        );
        assert_eq!(
            hashes["left_len"], hashes["right_len"],
            "both images are served with the same length: {hashes}"
        );
        let left_sha = hashes["left"].as_str().expect("left hash").to_string();
        let right_sha = hashes["right"].as_str().expect("right hash").to_string();
        // Fetched again as the participant (their cookie, read from the browser).
        let cookie = browser
            .command(reqwest::Method::GET, "/cookie/axl_participant", None)
            .await
            .unwrap_or_else(|e| panic!("the participant cookie: {e}"));
        let cookie = format!("axl_participant={}", cookie["value"].as_str().unwrap_or(""));
        for (src, sha) in [(&left_src, &left_sha), (&right_src, &right_sha)] {
            let bytes = http
                .get(src)
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .expect("fetch image")
                .bytes()
                .await
                .expect("image bytes");
            assert_eq!(
                Some(bytes.len() as u64),
                hashes["left_len"].as_u64(),
                "{src} served with another length"
            );
            assert_eq!(
                &sha256_hex(&without_padding(&bytes)),
                sha,
                "{src} served a different image"
            );
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{src} is not a PNG"
            );
        }

        if i == 0 {
            for size in [also, screen] {
                browser.resize(size).await;
                let layout = browser.script(LAYOUT).await.expect("layout script");
                check_layout(&layout, size, i + 1);
                let png = browser.screenshot().await;
                let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("browser-{}.png", size.name()));
                std::fs::write(&path, &png).expect("write screenshot");
                assert!(
                    png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
                    "the screenshot is not a PNG ({} bytes)",
                    png.len()
                );
            }
        }
        if i + 1 < steps.len() && steps[i + 1].images == Images::Late {
            gate.hold();
        }
        if i + 1 < steps.len() && steps[i + 1].images == Images::Fail {
            gate.fail_images(true);
        }

        if step.no_script {
            browser
                .cdp(
                    "Emulation.setScriptExecutionDisabled",
                    json!({ "value": true }),
                )
                .await;
            browser.post("/refresh", json!({})).await;
            let plain = wait_for(&browser, "the page without JavaScript", |s| {
                s["assignment"] == assignment.as_str() && s["buttons"] == 4
            })
            .await;
            assert_eq!(
                plain["enabled"], 4,
                "buttons unusable without JavaScript: {plain}"
            );
        }
        if let (true, Answer::Tap(value)) = (step.no_script, &step.answer) {
            // A touch at the button's centre (WebDriver's click waits on page scripts).
            let buttons = layout["buttons"].as_array().expect("button boxes");
            let b = buttons
                .iter()
                .find(|b| b["name"] == *value)
                .unwrap_or_else(|| panic!("no {value} button: {layout}"));
            let centre = |a: &str, z: &str| {
                (b[a].as_f64().unwrap_or(0.0) + b[z].as_f64().unwrap_or(0.0)) / 2.0
            };
            browser
                .touch(centre("left", "right"), centre("top", "bottom"))
                .await;
        } else {
            answer(&browser, &step.answer).await;
        }
        if step.no_script {
            browser
                .cdp(
                    "Emulation.setScriptExecutionDisabled",
                    json!({ "value": false }),
                )
                .await;
        }
        if let Some((_, released)) = slow.filter(|(page, _)| *page == i) {
            slow_answered = Some(released.elapsed());
        }
        shown.push(Shown {
            assignment: Uuid::parse_str(&assignment).expect("assignment id is a UUID"),
            choice: step.choice,
            left_sha,
            right_sha,
        });
        previous = Some(assignment);
    }
    let last_key = steps.last().map(|s| &s.answer);
    if let Some(Answer::HoldDown(key)) = last_key {
        browser.key_up(key).await;
    }

    // The completion page, read before its 3-second refresh to Prolific fires.
    let done = wait_for(&browser, "the completion page", |s| {
        assert!(
            s["assignment"].as_str() == previous.as_deref()
                || s["ready"] != "complete"
                || is_completion(s),
            "expected the completion page after {votes} votes, got: {s}"
        );
        is_completion(s)
    })
    .await;
    let prolific = "https://app.prolific.com/submissions/complete?cc=CODE-123";
    assert_eq!(done["code"], "CODE-123", "{done}");
    assert_eq!(done["url"], gate.url("/s/browser/done"), "{done}");
    assert_eq!(done["link"], prolific, "{done}");
    assert_eq!(done["refresh"], format!("3;url={prolific}"), "{done}");
    // Reopening the study link after finishing shows the same code again, never a fresh run.
    browser
        .goto(&gate.url(&format!(
            "/s/browser?PROLIFIC_PID={pid}&STUDY_ID=study-b&SESSION_ID=session-b"
        )))
        .await;
    wait_for(&browser, "the instructions page again", |s| {
        s["start"] == true
    })
    .await;
    browser.click("#start").await;
    let again = wait_for(&browser, "the completion page again", |s| {
        assert!(!is_comparison(s), "a fresh run after completion: {s}");
        is_completion(s)
    })
    .await;
    assert_eq!(again["code"], "CODE-123", "{again}");
    // Stay away from the (unreachable) Prolific site.
    browser.goto("about:blank").await;
    browser.quit(&mut driver).await;
    drop(driver);

    // The response time of the page whose images came late counts from when they came:
    // it is at most the time from their release to the answer.
    if let (Some((page, _)), Some(bound)) = (slow, slow_answered) {
        let ms: i32 = sqlx::query_scalar("SELECT response_ms FROM votes WHERE assignment_id = $1")
            .bind(shown[page].assignment)
            .fetch_one(&app.db.pool)
            .await
            .expect("response_ms of the slow page");
        assert!(
            i128::from(ms) <= bound.as_millis() as i128,
            "response_ms {ms} counts the wait for the images (answered {bound:?} after they came)"
        );
        eprintln!(
            "browser test at {}: response_ms {ms} for the page whose images came 1 s late",
            screen.name()
        );
    }

    // The database holds exactly these votes, for the images shown on each side.
    let participants: Vec<(Uuid, Option<String>, Option<String>, i32)> = sqlx::query_as(
        "SELECT id, prolific_study_id, prolific_session_id, votes_done FROM participants WHERE prolific_pid = $1",
    )
    .bind(&pid)
    .fetch_all(&app.db.pool)
    .await
    .expect("participants query");
    assert_eq!(
        participants.len(),
        1,
        "one participant for {pid}: {participants:?}"
    );
    let (participant, study_id, session_id, votes_done) = participants[0].clone();
    assert_eq!(study_id.as_deref(), Some("study-b"));
    assert_eq!(session_id.as_deref(), Some("session-b"));
    assert_eq!(votes_done, votes as i32);

    type Row = (
        Uuid,
        Option<String>,
        bool,
        Option<String>,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, v.choice, a.gold, a.gold_broken_side, \
           CASE WHEN a.gold AND a.gold_broken_side = 'left' THEN li.broken_sha256 ELSE li.sha256 END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'left' THEN li.broken_file ELSE li.file END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'right' THEN ri.broken_sha256 ELSE ri.sha256 END, \
           CASE WHEN a.gold AND a.gold_broken_side = 'right' THEN ri.broken_file ELSE ri.file END \
         FROM assignments a \
         LEFT JOIN votes v ON v.assignment_id = a.id \
         JOIN images li ON li.id = a.left_image JOIN images ri ON ri.id = a.right_image \
         WHERE a.participant_id = $1 ORDER BY a.issued_at, a.id",
    )
    .bind(participant)
    .fetch_all(&app.db.pool)
    .await
    .expect("assignments query");
    assert_eq!(
        rows.len(),
        votes,
        "assignments of the participant: {rows:?}"
    );
    assert_eq!(votes_stored().await, votes as i64);

    for page in &shown {
        let (_, choice, gold, broken_side, left_sha, left_file, right_sha, right_file) = rows
            .iter()
            .find(|r| r.0 == page.assignment)
            .unwrap_or_else(|| panic!("assignment {} shown but not stored", page.assignment))
            .clone();
        assert_eq!(choice.as_deref(), Some(page.choice), "the vote on {page:?}");
        assert_eq!(
            left_sha, page.left_sha,
            "left image of {page:?} (gold: {gold}, broken: {broken_side:?})"
        );
        assert_eq!(
            right_sha, page.right_sha,
            "right image of {page:?} (gold: {gold}, broken: {broken_side:?})"
        );
        for (file, sha) in [(&left_file, &left_sha), (&right_file, &right_sha)] {
            let stored = std::fs::read(app.store.path(file)).expect("stored image file");
            assert_eq!(&sha256_hex(&stored), sha, "stored file {file}");
        }
        if gold {
            // A gold check shows one image and its broken version.
            assert_ne!(page.left_sha, page.right_sha, "gold check {page:?}");
        }
    }
    let golds = rows.iter().filter(|r| r.2).count();
    eprintln!(
        "browser test: {votes} votes at {} stored as shown ({golds} gold checks)",
        screen.name()
    );
    let mut distinct: Vec<Uuid> = shown.iter().map(|s| s.assignment).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), votes, "every page showed a new assignment");
}
