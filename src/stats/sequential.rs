//! Anytime-valid inference for one model pair: a mixture likelihood ratio against p = 1/2
//! with a uniform Beta(1, 1) mixing prior, its running-minimum p-value, and the matching
//! confidence sequence. Unlike the fixed-n binomial test these stay valid when someone
//! looks after every vote and stops as soon as the answer is clear (Ville's inequality:
//! under p = 1/2 the chance that the likelihood ratio ever reaches 1/alpha is at most alpha).

use statrs::function::beta::ln_beta;

/// ln Λ for `s` wins of A and `f` of B: Λ = B(s+1, f+1) · 2^(s+f).
pub fn ln_mixture_lr(s: u64, f: u64) -> f64 {
    ln_beta(s as f64 + 1.0, f as f64 + 1.0) + (s + f) as f64 * std::f64::consts::LN_2
}

/// The set {p : B(s+1, f+1) / (p^s (1-p)^f) < 1/alpha} after `s` wins and `f` losses, as
/// [low, high]. It always contains s / (s + f), and is [0, 1] before any vote.
pub fn cs_at(s: u64, f: u64, alpha: f64) -> [f64; 2] {
    let (sf, ff) = (s as f64, f as f64);
    // Inside the set exactly where g(p) = s ln p + f ln(1-p) - ln B(s+1, f+1) - ln alpha > 0;
    // g is concave with its maximum at the observed rate, so the set is an interval.
    let c = ln_beta(sf + 1.0, ff + 1.0) + alpha.ln();
    let g = |p: f64| sf * p.ln() + ff * (-p).ln_1p() - c;
    let dg = |p: f64| sf / p - ff / (1.0 - p);
    let n = sf + ff;
    if n == 0.0 {
        return [0.0, 1.0];
    }
    let mode = sf / n;
    let low = if s == 0 {
        0.0
    } else {
        root(&g, &dg, 0.0, mode, true)
    };
    let high = if f == 0 {
        1.0
    } else {
        root(&g, &dg, mode, 1.0, false)
    };
    [low, high]
}

/// The root of `g` in (lo, hi), where g < 0 at lo and > 0 at hi when `rising`, the other way
/// round when not. Newton steps kept inside a shrinking bisection bracket, so it always
/// converges, and in a handful of steps (the simulations call this after every vote).
fn root(g: &impl Fn(f64) -> f64, dg: &impl Fn(f64) -> f64, lo: f64, hi: f64, rising: bool) -> f64 {
    let (mut lo, mut hi) = (lo, hi);
    let mut x = 0.5 * (lo + hi);
    for _ in 0..200 {
        let v = g(x);
        if v == 0.0 {
            return x;
        }
        if (v < 0.0) == rising {
            lo = x;
        } else {
            hi = x;
        }
        let d = dg(x);
        let mut next = x - v / d;
        // NaN and infinities fail the bracket test too.
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - x).abs() <= 1e-15 * x.max(1e-300) || hi - lo <= 1e-15 * hi {
            return next;
        }
        x = next;
    }
    x
}

/// The anytime-valid state of one pair, fed one decisive vote at a time in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    pub wins_a: u64,
    pub wins_b: u64,
    /// The largest ln Λ seen so far (0 before any vote: Λ₀ = 1).
    pub max_ln_lr: f64,
    /// The confidence sequence intersected over every look so far; `None` when not tracked.
    cs: Option<[f64; 2]>,
    alpha: f64,
}

impl Sequential {
    /// A fresh state; `track_cs` also keeps the confidence sequence at level `alpha` (two
    /// root searches a vote; the type-I error simulation needs only the p-value).
    pub fn new(alpha: f64, track_cs: bool) -> Sequential {
        Sequential {
            wins_a: 0,
            wins_b: 0,
            max_ln_lr: 0.0,
            cs: track_cs.then_some([0.0, 1.0]),
            alpha,
        }
    }

    /// A state that knows only the counts so far, not their order: the p-value uses the
    /// current Λ alone, which can only be larger (more cautious) than the running minimum.
    /// For a live scheduler reloading from the database; no confidence sequence.
    pub fn from_counts(wins_a: u64, wins_b: u64, alpha: f64) -> Sequential {
        Sequential {
            wins_a,
            wins_b,
            max_ln_lr: ln_mixture_lr(wins_a, wins_b).max(0.0),
            cs: None,
            alpha,
        }
    }

    /// Records one decisive vote.
    pub fn push(&mut self, a_wins: bool) {
        if a_wins {
            self.wins_a += 1;
        } else {
            self.wins_b += 1;
        }
        self.max_ln_lr = self.max_ln_lr.max(ln_mixture_lr(self.wins_a, self.wins_b));
        if let Some([low, high]) = self.cs {
            let [l, h] = cs_at(self.wins_a, self.wins_b, self.alpha);
            self.cs = Some([low.max(l), high.min(h)]);
        }
    }

    pub fn n(&self) -> u64 {
        self.wins_a + self.wins_b
    }

    /// pₙ = min(1, min over k ≤ n of 1/Λₖ).
    pub fn p_value(&self) -> f64 {
        (-self.max_ln_lr).exp().min(1.0)
    }

    /// The running intersection of the confidence sets. It can only come out empty
    /// (low > high) when the votes contradict every win rate, which under any fixed true
    /// rate happens with probability at most alpha.
    pub fn cs(&self) -> Option<[f64; 2]> {
        self.cs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixture_lr_by_hand() {
        // 3 wins, 1 loss: B(4, 2) = 3! 1! / 5! = 1/20; times 2^4 = 0.8.
        assert!((ln_mixture_lr(3, 1).exp() - 0.8).abs() < 1e-14);
        assert!(ln_mixture_lr(0, 0).abs() < 1e-14);
        // 10 straight wins: 2^10 / 11.
        assert!((ln_mixture_lr(10, 0).exp() - 1024.0 / 11.0).abs() < 1e-10);
    }

    #[test]
    fn p_value_is_the_running_minimum() {
        let mut s = Sequential::new(0.05, true);
        for _ in 0..10 {
            s.push(true);
        }
        let after_wins = s.p_value();
        assert!((after_wins - 11.0 / 1024.0).abs() < 1e-15);
        for _ in 0..10 {
            s.push(false);
        }
        // 10-10 alone would give a p-value of 1; the earlier look keeps its evidence.
        assert_eq!(s.p_value(), after_wins);
    }

    #[test]
    fn confidence_set_edges_solve_the_defining_equation() {
        let alpha = 0.05;
        for (s, f) in [(7u64, 3u64), (0, 12), (40, 0), (1, 1000), (500, 480)] {
            let [lo, hi] = cs_at(s, f, alpha);
            let ratio = |p: f64| {
                ln_beta(s as f64 + 1.0, f as f64 + 1.0)
                    - s as f64 * p.ln()
                    - f as f64 * (1.0 - p).ln()
            };
            let mode = s as f64 / (s + f) as f64;
            assert!(lo <= mode && mode <= hi, "({s}, {f}): {lo} {hi}");
            for edge in [lo, hi] {
                if edge > 0.0 && edge < 1.0 {
                    assert!(
                        (ratio(edge) + alpha.ln()).abs() < 1e-8,
                        "({s}, {f}) at {edge}"
                    );
                }
            }
        }
        assert_eq!(cs_at(0, 0, alpha), [0.0, 1.0]);
    }
}
