//! Unit tests of the scheduler's balancing rules.
use super::*;
use rand::SeedableRng;

fn plan(prompts: usize, model_pairs: usize) -> StudyPlan {
    let prompt_ids: Vec<Uuid> = (0..prompts).map(|_| Uuid::new_v4()).collect();
    let mp_ids: Vec<Uuid> = (0..model_pairs).map(|_| Uuid::new_v4()).collect();
    let mut rows = Vec::new();
    for p in &prompt_ids {
        for mp in &mp_ids {
            rows.push(PairRow {
                id: Uuid::new_v4(),
                prompt_id: *p,
                prompt_text: "x".into(),
                model_pair_id: *mp,
                image_a: Uuid::new_v4(),
                image_b: Uuid::new_v4(),
                issued: 0,
                votes: 0,
                a_left: 0,
            });
        }
    }
    StudyPlan::new(1, rows, vec![], vec![], Duration::from_secs(1800))
}

#[test]
fn balances_model_pairs_prompts_and_sides() {
    let mut plan = plan(10, 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut a_left: HashMap<Uuid, i64> = HashMap::new();
    for _ in 0..20 {
        let mut seen = HashSet::new();
        for _ in 0..6 {
            match plan.pick(&seen, 0.0, &mut rng).unwrap() {
                Pick::Pair {
                    pair_id,
                    prompt_id,
                    model_pair_id,
                    left_image,
                    ..
                } => {
                    assert!(
                        seen.insert((prompt_id, model_pair_id)),
                        "same prompt and model pair twice"
                    );
                    let slot = plan.pairs.iter().find(|s| s.id == pair_id).unwrap();
                    *a_left.entry(model_pair_id).or_default() +=
                        if left_image == slot.image_a { 1 } else { -1 };
                }
                Pick::Gold { .. } => unreachable!(),
            }
        }
    }
    let per_mp: Vec<u64> = plan.model_pair_issued.clone();
    assert_eq!(
        per_mp.iter().max().unwrap() - per_mp.iter().min().unwrap(),
        0,
        "{per_mp:?}"
    );
    let per_prompt = &plan.prompt_issued;
    assert!(
        per_prompt.iter().max().unwrap() - per_prompt.iter().min().unwrap() <= 1,
        "{per_prompt:?}"
    );
    for (mp, diff) in a_left {
        assert!(diff.abs() <= 1, "model pair {mp} side imbalance {diff}");
    }
}

#[test]
fn runs_out_when_everything_was_seen() {
    let mut plan = plan(2, 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut seen = HashSet::new();
    for _ in 0..2 {
        if let Some(Pick::Pair {
            prompt_id,
            model_pair_id,
            ..
        }) = plan.pick(&seen, 0.0, &mut rng)
        {
            seen.insert((prompt_id, model_pair_id));
        }
    }
    assert_eq!(plan.pick(&seen, 0.0, &mut rng), None);
}

#[test]
fn abandoned_assignments_stop_counting_after_the_timeout() {
    let mut plan = plan(4, 2);
    plan.timeout = Duration::from_secs(60);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let t0 = Instant::now();
    // One participant takes a comparison and leaves.
    let Some(Pick::Pair { pair_id, .. }) = plan.pick(&HashSet::new(), 0.0, &mut rng) else {
        panic!("a pair");
    };
    let abandoned = Uuid::new_v4();
    plan.opened(abandoned, pair_id, true, t0);
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 1);
    plan.expire(t0 + Duration::from_secs(59));
    assert_eq!(
        plan.model_pair_counts().iter().sum::<u64>(),
        1,
        "still open"
    );
    plan.expire(t0 + Duration::from_secs(60));
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 0, "expired");
    // A late vote on it still counts, once.
    plan.record_vote(abandoned, pair_id, true);
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 1);
    // An open assignment that is voted keeps its single count.
    let voted = Uuid::new_v4();
    let Some(Pick::Pair { pair_id, .. }) = plan.pick(&HashSet::new(), 0.0, &mut rng) else {
        panic!("a pair");
    };
    plan.opened(voted, pair_id, true, t0 + Duration::from_secs(61));
    plan.record_vote(voted, pair_id, true);
    plan.expire(t0 + Duration::from_secs(1000));
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 2);
}

/// A re-read of the counts that cannot show this process's picks (still being stored, or
/// stored after the read was sent) keeps counting them; picks stored before it trust it.
#[test]
fn a_re_read_keeps_counting_picks_it_cannot_have_seen() {
    let mut plan = plan(4, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut pick = |plan: &mut StudyPlan| {
        let Some(Pick::Pair {
            pair_id, a_left, ..
        }) = plan.pick(&HashSet::new(), 0.0, &mut rng)
        else {
            panic!("expected a pair");
        };
        let id = Uuid::new_v4();
        plan.track_pick(id, pair_id, a_left);
        (id, pair_id, a_left)
    };
    let (stored_early, pair_early, side_early) = pick(&mut plan);
    plan.opened(stored_early, pair_early, side_early, Instant::now());
    let sent = Instant::now();
    let (in_flight, pair_late, side_late) = pick(&mut plan);
    let votes: Vec<(Uuid, i64, i64)> = plan.pairs.iter().map(|s| (s.id, 0, 0)).collect();
    // The read shows the early pick as open and knows nothing of the one in flight.
    let early_row = OpenAssignment {
        id: stored_early,
        pair_id: pair_early,
        age: Duration::ZERO,
        a_left: side_early,
    };
    plan.sync(sent, &votes, vec![early_row.clone()]);
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 2);
    // The next read, sent after both were stored, shows both; nothing is counted twice.
    plan.opened(in_flight, pair_late, side_late, Instant::now());
    let later = Instant::now();
    let late_row = OpenAssignment {
        id: in_flight,
        pair_id: pair_late,
        age: Duration::ZERO,
        a_left: side_late,
    };
    plan.sync(later, &votes, vec![early_row, late_row]);
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 2);
    // A pick that could not be stored is taken back.
    let (failed, _, _) = pick(&mut plan);
    plan.unissue(failed);
    assert_eq!(plan.model_pair_counts().iter().sum::<u64>(), 2);
}

/// A process alone on its study never re-reads the counts (and keeps no stored picks); once
/// a stored comparison shows another process issuing in the study, it re-reads them.
#[test]
fn re_reads_start_when_another_process_issues_comparisons() {
    let mut plan = plan(3, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let later = Instant::now() + Duration::from_secs(1);
    for k in 0..4 {
        let Some(Pick::Pair {
            pair_id, a_left, ..
        }) = plan.pick(&HashSet::new(), 0.0, &mut rng)
        else {
            panic!("expected a pair");
        };
        let id = Uuid::new_v4();
        plan.track_pick(id, pair_id, a_left);
        plan.opened(id, pair_id, a_left, Instant::now());
        assert!(!plan.shared, "pick {k}: alone");
        assert!(plan.own.is_empty(), "alone, stored picks are not kept");
        assert!(!plan.claim_sync(later), "alone: no re-read");
    }
    plan.other_process_seen();
    assert!(plan.shared);
    assert!(plan.claim_sync(later), "shared: re-read when stale");
    assert!(!plan.claim_sync(later), "one re-read per interval");
}
