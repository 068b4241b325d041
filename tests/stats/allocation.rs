//! Adaptive allocation through the real scheduler (`StudyPlan::pick`): it must keep every
//! guarantee uniform allocation gives (no repeats for a participant, sides block-randomised
//! per model pair, prompts balanced within a model pair) while sending the votes to the
//! model pairs that are not yet decided, and keep sampling the decided ones.

use std::collections::{HashMap, HashSet};

use arenaxl::study::allocation::{Allocation, EXPLORATION};
use arenaxl::study::scheduler::{PairRow, Pick, StudyPlan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

struct Setup {
    plan: StudyPlan,
    mp_ids: Vec<Uuid>,
    /// Pair id to (model pair index, image A).
    pairs: HashMap<Uuid, (usize, Uuid)>,
}

/// `prompts` prompts times `model_pairs` model pairs; `outcomes[mp]` seeds (wins of A,
/// wins of B) for each model pair.
fn setup(prompts: usize, outcomes: &[(u64, u64)], allocation: Allocation) -> Setup {
    let mp_ids: Vec<Uuid> = outcomes.iter().map(|_| Uuid::new_v4()).collect();
    let mut rows = Vec::new();
    let mut pairs = HashMap::new();
    let mut seeded = Vec::new();
    for p in 0..prompts {
        let prompt_id = Uuid::new_v4();
        for (mp, &id) in mp_ids.iter().enumerate() {
            let row = PairRow {
                id: Uuid::new_v4(),
                prompt_id,
                prompt_text: format!("prompt {p}"),
                model_pair_id: id,
                image_a: Uuid::new_v4(),
                image_b: Uuid::new_v4(),
                issued: 0,
                votes: 0,
                a_left: 0,
            };
            pairs.insert(row.id, (mp, row.image_a));
            if p == 0 {
                // The stored outcomes of a model pair, all on its first prompt's pair.
                seeded.push((row.id, outcomes[mp].0, outcomes[mp].1));
            }
            rows.push(row);
        }
    }
    let plan = StudyPlan::new(
        1,
        rows,
        vec![],
        vec![],
        std::time::Duration::from_secs(1800),
    )
    .with_allocation(allocation, &seeded);
    Setup {
        plan,
        mp_ids,
        pairs,
    }
}

/// Per model pair: assignments, and (A on the left) - (A on the right) after each one.
struct Observed {
    per_mp: Vec<u64>,
    per_mp_prompt: HashMap<(usize, Uuid), u64>,
    max_side_gap: Vec<i64>,
}

/// Participants take `per_participant` comparisons each; every answer is a coin flip.
fn run(s: &mut Setup, participants: usize, per_participant: usize, seed: u64) -> Observed {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = s.mp_ids.len();
    let mut obs = Observed {
        per_mp: vec![0; n],
        per_mp_prompt: HashMap::new(),
        max_side_gap: vec![0; n],
    };
    let mut side_gap = vec![0i64; n];
    for _ in 0..participants {
        let mut seen = HashSet::new();
        for _ in 0..per_participant {
            let pick = s.plan.pick(&seen, 0.0, &mut rng);
            let Some(Pick::Pair {
                pair_id,
                prompt_id,
                model_pair_id,
                left_image,
                a_left,
                ..
            }) = pick
            else {
                panic!("a fresh participant in a large study must get a comparison: {pick:?}");
            };
            assert!(
                seen.insert((prompt_id, model_pair_id)),
                "the same prompt and model pair twice for one participant"
            );
            let (mp, image_a) = s.pairs[&pair_id];
            assert_eq!(s.mp_ids[mp], model_pair_id);
            obs.per_mp[mp] += 1;
            *obs.per_mp_prompt.entry((mp, prompt_id)).or_default() += 1;
            side_gap[mp] += if left_image == image_a { 1 } else { -1 };
            obs.max_side_gap[mp] = obs.max_side_gap[mp].max(side_gap[mp].abs());
            // Answered at once: opened, then voted (counted once).
            let assignment = Uuid::new_v4();
            s.plan
                .opened(assignment, pair_id, a_left, std::time::Instant::now());
            s.plan.record_vote(assignment, pair_id, a_left);
            s.plan.record_outcome(pair_id, rng.gen_bool(0.5));
        }
    }
    obs
}

#[test]
fn adaptive_keeps_every_scheduling_guarantee() {
    // Model pair 0 is long decided (95 of 100); 1 and 2 are open.
    let mut s = setup(60, &[(95, 5), (10, 9), (3, 4)], Allocation::Adaptive);
    let obs = run(&mut s, 60, 25, 3);
    for mp in 0..3 {
        // Sides: within one per model pair at every moment.
        assert!(
            obs.max_side_gap[mp] <= 1,
            "model pair {mp}: side gap {}",
            obs.max_side_gap[mp]
        );
        // Prompts: within one inside each model pair.
        let mut counts: Vec<u64> = obs
            .per_mp_prompt
            .iter()
            .filter(|((m, _), _)| *m == mp)
            .map(|(_, c)| *c)
            .collect();
        counts.resize(60, 0);
        let (lo, hi) = (counts.iter().min(), counts.iter().max());
        assert!(
            hi.zip(lo).is_some_and(|(h, l)| h - l <= 1),
            "model pair {mp}: prompt counts {counts:?}"
        );
    }
    // The decided pair keeps being sampled, at about the exploration share or less.
    let total: u64 = obs.per_mp.iter().sum();
    let decided_share = obs.per_mp[0] as f64 / total as f64;
    assert!(obs.per_mp[0] > 0, "{:?}", obs.per_mp);
    assert!(decided_share < EXPLORATION * 1.5, "{:?}", obs.per_mp);
}

#[test]
fn adaptive_sends_votes_to_undecided_pairs_and_uniform_does_not() {
    let outcomes = [(95, 5), (2, 98), (40, 38)];
    let mut adaptive = setup(40, &outcomes, Allocation::Adaptive);
    let a = run(&mut adaptive, 30, 20, 11);
    let mut uniform = setup(40, &outcomes, Allocation::Uniform);
    let u = run(&mut uniform, 30, 20, 11);
    let share = |o: &Observed| o.per_mp[2] as f64 / o.per_mp.iter().sum::<u64>() as f64;
    // Uniform: every model pair exactly a third.
    assert_eq!(u.per_mp[0], u.per_mp[2], "{:?}", u.per_mp);
    assert_eq!(u.per_mp[1], u.per_mp[2], "{:?}", u.per_mp);
    assert!(
        share(&a) > 0.85,
        "adaptive gave the open pair {:?}",
        a.per_mp
    );
}

#[test]
fn a_participant_who_saw_the_focus_pair_gets_another_pair() {
    // Two prompts only: after both prompts of the open pair, the participant must still
    // be served from the decided one rather than get nothing.
    let mut s = setup(2, &[(95, 5), (10, 10)], Allocation::Adaptive);
    let mut rng = StdRng::seed_from_u64(5);
    let mut seen = HashSet::new();
    let mut got = 0;
    while let Some(Pick::Pair {
        prompt_id,
        model_pair_id,
        ..
    }) = s.plan.pick(&seen, 0.0, &mut rng)
    {
        assert!(seen.insert((prompt_id, model_pair_id)));
        got += 1;
    }
    assert_eq!(got, 4, "every (prompt, model pair) once, then nothing");
}
