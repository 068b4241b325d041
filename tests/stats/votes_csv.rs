//! Reading and writing the votes CSV: round trip, optional and extra columns, and every
//! kind of malformed file rejected with the right line and field.

use arenaxl::report::votes::{read_votes_csv, write_votes_csv, Choice, VoteRecord};

const HEADER: &str =
    "participant_id,prompt_id,model_left,model_right,choice,category,gold,response_ms,created_at,platform,external_id,fast\n";

fn read(text: &str) -> Result<Vec<VoteRecord>, arenaxl::report::votes::VotesError> {
    read_votes_csv(text.as_bytes(), "votes.csv")
}

fn err(text: &str) -> (Option<u64>, Option<&'static str>, String) {
    match read(text) {
        Ok(v) => panic!("accepted a malformed file: {v:?}"),
        Err(e) => (e.line(), e.field(), e.to_string()),
    }
}

#[test]
fn round_trip_through_write_and_read() {
    let votes = vec![
        VoteRecord {
            participant_id: "p,1 \"quoted\"".into(),
            prompt_id: "a cat\non two lines".into(),
            model_left: "SSD-1B".into(),
            model_right: "SDXL <base>".into(),
            choice: Choice::BothBad,
            category: Some("people".into()),
            gold: false,
            response_ms: Some(1234),
            created_at: Some("2026-11-27T13:10:00+00:00".into()),
            platform: Some("prolific".into()),
            external_id: Some("5f1e,\"x\"".into()),
            fast: true,
        },
        VoteRecord {
            participant_id: "p2".into(),
            prompt_id: "q".into(),
            model_left: "SDXL#broken".into(),
            model_right: "SDXL".into(),
            choice: Choice::Right,
            category: None,
            gold: true,
            response_ms: None,
            created_at: None,
            platform: None,
            external_id: None,
            fast: false,
        },
    ];
    let mut buf = Vec::new();
    write_votes_csv(&mut buf, &votes).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(buf).unwrap_or_default();
    assert!(text.starts_with(HEADER), "{text}");
    assert_eq!(read(&text).unwrap_or_else(|e| panic!("{e}")), votes);
}

#[test]
fn optional_columns_may_be_missing_and_extra_ones_are_ignored() {
    let v = read("choice,extra,model_right,model_left,prompt_id,participant_id\ntie,x,B,A,q1,p1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].model_left.as_str(), v[0].choice, v[0].gold),
        ("A", Choice::Tie, false)
    );
    assert_eq!((v[0].category.clone(), v[0].response_ms), (None, None));
}

#[test]
fn missing_column_is_named() {
    let (line, field, msg) = err("participant_id,prompt_id,model_left,choice\np,q,A,left\n");
    assert_eq!((line, field), (Some(1), Some("model_right")));
    assert!(
        msg.contains("votes.csv") && msg.contains("model_right"),
        "{msg}"
    );
}

#[test]
fn unknown_choice_reports_line_and_field() {
    let text = format!("{HEADER}p,q,A,B,left,,,,\np,q,A,B,right,,,,\np,q,A,B,maybe,,,,\n");
    let (line, field, msg) = err(&text);
    assert_eq!((line, field), (Some(4), Some("choice")));
    assert!(msg.contains("line 4") && msg.contains("maybe"), "{msg}");
}

#[test]
fn self_comparison_reports_line() {
    let text = format!("{HEADER}p,q,A,B,left,,,,\np,q,A,A,left,,,,\n");
    let (line, field, msg) = err(&text);
    assert_eq!((line, field), (Some(3), Some("model_right")));
    assert!(msg.contains("itself"), "{msg}");
}

#[test]
fn line_numbers_count_quoted_newlines() {
    let text = format!("{HEADER}p,\"two\nlines\",A,B,left,,,,\np,q,A,B,sideways,,,,\n");
    assert_eq!(err(&text).0, Some(4));
}

#[test]
fn bad_number_bool_and_timestamp_are_rejected() {
    let (line, field, _) = err(&format!("{HEADER}p,q,A,B,left,,,12x,\n"));
    assert_eq!((line, field), (Some(2), Some("response_ms")));
    let (line, field, _) = err(&format!("{HEADER}p,q,A,B,left,,,-5,\n"));
    assert_eq!((line, field), (Some(2), Some("response_ms")));
    let (line, field, _) = err(&format!("{HEADER}p,q,A,B,left,,perhaps,,\n"));
    assert_eq!((line, field), (Some(2), Some("gold")));
    let (line, field, _) = err(&format!("{HEADER}p,q,A,B,left,,,,yesterday\n"));
    assert_eq!((line, field), (Some(2), Some("created_at")));
}

#[test]
fn empty_and_short_rows_are_rejected() {
    let (line, field, _) = err(&format!("{HEADER}p,q,A,B,left,,,,\n,q,A,B,left,,,,\n"));
    assert_eq!((line, field), (Some(3), Some("participant_id")));
    let (line, field, _) = err(&format!("{HEADER}p,q,A\n"));
    assert_eq!((line, field), (Some(2), Some("model_right")));
}

#[test]
fn gold_rows_need_exactly_one_broken_side() {
    let (line, field, _) = err(&format!("{HEADER}p,q,A,B,left,,true,,\n"));
    assert_eq!((line, field), (Some(2), Some("gold")));
    let (line, field, _) = err(&format!("{HEADER}p,q,A#broken,B,left,,false,,\n"));
    assert_eq!((line, field), (Some(2), Some("model_left")));
    let ok = read(&format!(
        "{HEADER}p,q,A#broken,A,right,,true,,\np,q,A,A#broken,right,,1,,\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.iter().map(|v| v.gold_passed()).collect::<Vec<_>>(),
        vec![Some(true), Some(false)]
    );
}
