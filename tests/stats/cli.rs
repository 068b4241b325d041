//! `arenaxl report` as a user runs it: output formats, and clear errors with a non-zero
//! exit status (never a panic) for bad files and arguments.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stats")
        .join(name)
        .display()
        .to_string()
}

fn arenaxl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run arenaxl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_writes_each_format() {
    let votes = fixture("basic.csv");
    let (code, json, err) = arenaxl(&["report", "--votes", &votes, "--bootstrap", "50"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["n_votes"], 720);
    assert_eq!(v["settings"]["bootstrap"], 50);
    let (code, csv, _) = arenaxl(&[
        "report",
        "--votes",
        &votes,
        "--format",
        "csv",
        "--bootstrap",
        "0",
    ]);
    assert_eq!(code, 0);
    assert_eq!(csv.lines().count(), 7, "header and six pairs: {csv}");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("r.html");
    let out_s = out.display().to_string();
    let (code, stdout, err) = arenaxl(&[
        "report",
        "--votes",
        &votes,
        "--format",
        "html",
        "--out",
        &out_s,
        "--bootstrap",
        "20",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty());
    let html = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn malformed_file_names_line_and_field() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "participant_id,prompt_id,model_left,model_right,choice\np,q,A,B,left\np,q,A,B,maybe\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, stdout, err) = arenaxl(&["report", "--votes", &path.display().to_string()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        err.contains("bad.csv line 3, field 'choice'") && err.contains("maybe"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_arguments_are_errors() {
    let votes = fixture("basic.csv");
    let (code, _, err) = arenaxl(&["report", "--votes", "/nonexistent/votes.csv"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/votes.csv"), "{err}");
    let (code, _, err) = arenaxl(&["report", "--votes", &votes, "--anchor", "nobody=1000"]);
    assert_eq!(code, 1);
    assert!(err.contains("nobody"), "{err}");
    let (code, _, err) = arenaxl(&["report", "--votes", &votes, "--alpha", "1.5"]);
    assert_eq!(code, 1);
    assert!(err.contains("alpha"), "{err}");
    let (code, _, err) = arenaxl(&["report", "--votes", &votes, "--cluster", "household"]);
    assert_ne!(code, 0);
    assert!(err.contains("household"), "{err}");
}
