//! Bradley-Terry maximum-likelihood fit with ties counted as half a win for each side.
//!
//! Model: P(i beats j) = σ(θ_i - θ_j). With s_ij the score of i against j (wins plus half
//! the ties and both-bad votes) and n_ij the games, the log-likelihood is
//! Σ_pairs s_ij (θ_i - θ_j) - n_ij ln(1 + e^{θ_i - θ_j}). It is concave and is maximised by
//! damped Newton steps; θ is centred to mean 0.
//!
//! The MLE exists (is finite) exactly when the "beat-or-tied" graph of the component is
//! strongly connected: every split of the models into two groups has each group scoring
//! against the other. When it does not (a model that never wins, or never loses), the fit
//! adds a weak Gaussian prior θ ~ N(0, 1/PRIOR_PRECISION) and reports that it did.

use thiserror::Error;

/// Precision of the fallback prior on θ (σ = 10 natural-log units, about 1737 Elo points).
pub const PRIOR_PRECISION: f64 = 0.01;

/// Elo points per natural-log unit of strength: 400 / ln 10.
pub const ELO_PER_NAT: f64 = 400.0 / std::f64::consts::LN_10;

#[derive(Debug, Error, PartialEq)]
pub enum BtError {
    #[error("Bradley-Terry fit did not converge after {0} Newton iterations")]
    NotConverged(usize),
    #[error("Bradley-Terry input is inconsistent: {0}")]
    BadInput(String),
}

/// Which estimate a fit returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// Plain maximum likelihood (the MLE exists).
    Mle,
    /// Maximum a posteriori with the weak prior (the MLE does not exist).
    PriorFallback,
}

/// One pair of models (local indices, `i < j` not required) with i's score and the games.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BtPair {
    pub i: usize,
    pub j: usize,
}

/// A fitted component: θ (mean 0) per model and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct BtFit {
    pub theta: Vec<f64>,
    pub estimator: Estimator,
    pub iterations: usize,
}

/// Connected components of the comparison graph (pairs with at least one game).
/// Returns the component id of each model, numbered by first appearance (model order).
pub fn components(m: usize, pairs: &[BtPair], games: &[f64]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..m).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (p, &g) in pairs.iter().zip(games) {
        if g > 0.0 {
            let (a, b) = (find(&mut parent, p.i), find(&mut parent, p.j));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut ids = vec![usize::MAX; m];
    let mut root_id = vec![usize::MAX; m];
    let mut next = 0;
    for (x, id) in ids.iter_mut().enumerate() {
        let r = find(&mut parent, x);
        if root_id[r] == usize::MAX {
            root_id[r] = next;
            next += 1;
        }
        *id = root_id[r];
    }
    ids
}

/// Whether the MLE exists: the directed graph with an edge i→j when i scored against j is
/// strongly connected (every model reaches every other and is reached by it).
pub fn mle_exists(m: usize, pairs: &[BtPair], score: &[f64], games: &[f64]) -> bool {
    if m <= 1 {
        return true;
    }
    let mut fwd = vec![Vec::new(); m];
    let mut back = vec![Vec::new(); m];
    for ((p, &s), &g) in pairs.iter().zip(score).zip(games) {
        if s > 0.0 {
            fwd[p.i].push(p.j);
            back[p.j].push(p.i);
        }
        if g - s > 0.0 {
            fwd[p.j].push(p.i);
            back[p.i].push(p.j);
        }
    }
    reaches_all(&fwd) && reaches_all(&back)
}

fn reaches_all(adj: &[Vec<usize>]) -> bool {
    let mut seen = vec![false; adj.len()];
    let mut stack = vec![0];
    seen[0] = true;
    let mut count = 1;
    while let Some(x) = stack.pop() {
        for &y in &adj[x] {
            if !seen[y] {
                seen[y] = true;
                count += 1;
                stack.push(y);
            }
        }
    }
    count == adj.len()
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn log_lik(theta: &[f64], pairs: &[BtPair], score: &[f64], games: &[f64], prior: f64) -> f64 {
    let mut ll = 0.0;
    for ((p, &s), &n) in pairs.iter().zip(score).zip(games) {
        let d = theta[p.i] - theta[p.j];
        ll += s * d - n * softplus(d);
    }
    ll - 0.5 * prior * theta.iter().map(|t| t * t).sum::<f64>()
}

/// Fits one connected component of `m` models. `score[k]` is model `pairs[k].i`'s score
/// against `pairs[k].j` and `games[k]` the number of games between them.
pub fn fit(m: usize, pairs: &[BtPair], score: &[f64], games: &[f64]) -> Result<BtFit, BtError> {
    if pairs.len() != score.len() || pairs.len() != games.len() {
        return Err(BtError::BadInput(
            "pairs, scores and games differ in length".into(),
        ));
    }
    if let Some(p) = pairs.iter().find(|p| p.i >= m || p.j >= m || p.i == p.j) {
        return Err(BtError::BadInput(format!("bad pair {p:?} for {m} models")));
    }
    if m <= 1 {
        return Ok(BtFit {
            theta: vec![0.0; m],
            estimator: Estimator::Mle,
            iterations: 0,
        });
    }
    let (estimator, prior) = if mle_exists(m, pairs, score, games) {
        (Estimator::Mle, 0.0)
    } else {
        (Estimator::PriorFallback, PRIOR_PRECISION)
    };
    let mut theta = vec![0.0; m];
    let mut grad = vec![0.0; m];
    let mut hess = vec![0.0; m * m];
    let mut ll = log_lik(&theta, pairs, score, games, prior);
    const MAX_ITER: usize = 200;
    for iter in 1..=MAX_ITER {
        grad.iter_mut().for_each(|g| *g = 0.0);
        hess.iter_mut().for_each(|h| *h = 0.0);
        for ((p, &s), &n) in pairs.iter().zip(score).zip(games) {
            let sig = sigmoid(theta[p.i] - theta[p.j]);
            let g = s - n * sig;
            grad[p.i] += g;
            grad[p.j] -= g;
            let w = n * sig * (1.0 - sig);
            hess[p.i * m + p.i] += w;
            hess[p.j * m + p.j] += w;
            hess[p.i * m + p.j] -= w;
            hess[p.j * m + p.i] -= w;
        }
        for (k, t) in theta.iter().enumerate() {
            grad[k] -= prior * t;
            hess[k * m + k] += prior;
        }
        if prior == 0.0 {
            // Without a prior the Laplacian is singular along (1,…,1); adding 11ᵀ/m fixes
            // that direction without changing the step, since the gradient sums to zero.
            let add = 1.0 / m as f64;
            hess.iter_mut().for_each(|h| *h += add);
        }
        let step = cholesky_solve(&mut hess, &grad, m)
            .ok_or_else(|| BtError::BadInput("singular information matrix".into()))?;
        // Damped step: halve until the (concave) log-likelihood does not decrease.
        let mut t = 1.0;
        let mut candidate = vec![0.0; m];
        let mut new_ll = f64::NEG_INFINITY;
        for _ in 0..60 {
            for k in 0..m {
                candidate[k] = theta[k] + t * step[k];
            }
            if prior == 0.0 {
                let mean = candidate.iter().sum::<f64>() / m as f64;
                candidate.iter_mut().for_each(|c| *c -= mean);
            }
            new_ll = log_lik(&candidate, pairs, score, games, prior);
            if new_ll >= ll - 1e-12 * ll.abs().max(1.0) {
                break;
            }
            t *= 0.5;
        }
        let max_step = step.iter().fold(0.0_f64, |a, s| a.max((t * s).abs()));
        theta.copy_from_slice(&candidate);
        ll = new_ll;
        if max_step < 1e-12 {
            return Ok(BtFit {
                theta,
                estimator,
                iterations: iter,
            });
        }
    }
    Err(BtError::NotConverged(MAX_ITER))
}

/// Solves A x = b for symmetric positive definite A (overwritten by its Cholesky factor).
fn cholesky_solve(a: &mut [f64], b: &[f64], m: usize) -> Option<Vec<f64>> {
    for j in 0..m {
        let mut d = a[j * m + j];
        for k in 0..j {
            d -= a[j * m + k] * a[j * m + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= a[i * m + k] * a[j * m + k];
            }
            a[i * m + j] = s / d;
        }
    }
    let mut y = b.to_vec();
    for i in 0..m {
        for k in 0..i {
            y[i] -= a[i * m + k] * y[k];
        }
        y[i] /= a[i * m + i];
    }
    for i in (0..m).rev() {
        for k in i + 1..m {
            y[i] -= a[k * m + i] * y[k];
        }
        y[i] /= a[i * m + i];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_models_have_closed_form() {
        // 30 of 40 for model 0: θ0 - θ1 = ln(30/10).
        let pairs = [BtPair { i: 0, j: 1 }];
        let fit = fit(2, &pairs, &[30.0], &[40.0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fit.estimator, Estimator::Mle);
        assert!((fit.theta[0] - fit.theta[1] - 3f64.ln()).abs() < 1e-12);
        assert!((fit.theta[0] + fit.theta[1]).abs() < 1e-12);
    }

    #[test]
    fn never_winning_model_uses_prior() {
        let pairs = [BtPair { i: 0, j: 1 }, BtPair { i: 1, j: 2 }];
        assert!(!mle_exists(3, &pairs, &[5.0, 0.0], &[10.0, 10.0]));
        let fit = fit(3, &pairs, &[5.0, 0.0], &[10.0, 10.0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fit.estimator, Estimator::PriorFallback);
        assert!(fit.theta.iter().all(|t| t.is_finite()));
        assert!(fit.theta[2] > fit.theta[1] + 3.0);
    }

    #[test]
    fn components_split_disconnected_models() {
        let pairs = [BtPair { i: 0, j: 2 }, BtPair { i: 1, j: 3 }];
        assert_eq!(components(4, &pairs, &[1.0, 1.0]), vec![0, 1, 0, 1]);
        assert_eq!(components(4, &pairs, &[1.0, 0.0]), vec![0, 1, 0, 2]);
    }
}
