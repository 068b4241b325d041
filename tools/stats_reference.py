#!/usr/bin/env python3
"""Reference values for ArenaXL's statistics, computed with the libraries researchers use.

Writes, for each synthetic data set, `tests/fixtures/stats/<name>.csv` (the votes) and
`tests/fixtures/stats/<name>.expected.json` (what the report must contain). The Rust tests
(tests/stats/reference.rs) read both; CI does not need Python.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scipy statsmodels krippendorff numpy
    /tmp/venv/bin/python tools/stats_reference.py         # every fixture
    /tmp/venv/bin/python tools/stats_reference.py tails   # only tails.expected.json

Sources of truth:
  p-values           scipy.stats.binomtest(k, n, 0.5).pvalue (two-sided)
  intervals          statsmodels proportion_confint(method="wilson" / "beta")
  Holm               statsmodels multipletests(method="holm")
  sequential         written here from the definitions with scipy.special.betaln and
                     scipy.optimize.brentq: Beta(1,1) mixture likelihood ratio against 1/2
                     over the decisive votes in created_at order (file order breaks ties,
                     rows without a time first), its running-minimum p-value, the
                     confidence sequence intersected over every look, Holm across pairs
  Fleiss' kappa      statsmodels fleiss_kappa (items with the modal number of raters)
  Krippendorff       krippendorff.alpha(reliability_data, level_of_measurement="nominal")
  Bradley-Terry      written here: scipy.optimize.minimize (trust-exact) on the
                     log-likelihood with ties and both-bad as half wins, cross-checked
                     against Hunter's MM algorithm run to convergence
"""

import csv
import datetime
import json
import math
import os
import sys

import krippendorff
import numpy as np
from scipy import optimize, special, stats
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "stats")
ELO = 400.0 / math.log(10.0)
PRIOR_PRECISION = 0.01  # must match src/stats/bt.rs
BROKEN = "#broken"
POWER = 0.8


# ---------------------------------------------------------------- data sets

def vote(p, prompt, left, right, choice, category="", gold=False, ms="", at=""):
    return dict(participant_id=p, prompt_id=prompt, model_left=left, model_right=right,
                choice=choice, category=category, gold="true" if gold else "false",
                response_ms=str(ms), created_at=at)


def simulate(rng, models, strengths, participants, prompts, n_per_participant,
             tie=0.1, both_bad=0.04, left_bias=0.03, gold_every=0, fail_rate=0.0,
             categories=("people", "animals", "objects"), t0=1_790_000_000, span=3 * 86400):
    rows = []
    k = 0
    for p in range(participants):
        pid = f"p{p:03d}"
        for i in range(n_per_participant):
            prompt = int(rng.integers(prompts))
            a, b = rng.choice(len(models), size=2, replace=False)
            if rng.random() < 0.5:
                a, b = b, a
            ts = t0 + int(span * k / (participants * n_per_participant))
            at = np.datetime_as_string(np.datetime64(ts, "s")) + "Z"
            ms = int(500 + rng.integers(5000))
            cat = categories[prompt % len(categories)] if categories else ""
            if gold_every and i % gold_every == gold_every - 1:
                passed = rng.random() >= fail_rate
                broken_left = rng.random() < 0.5
                left = models[a] + BROKEN if broken_left else models[a]
                right = models[a] if broken_left else models[a] + BROKEN
                good_side = "right" if broken_left else "left"
                bad_side = "left" if broken_left else "right"
                choice = good_side if passed else rng.choice([bad_side, "tie", "both_bad"])
                rows.append(vote(pid, f"gold{prompt}", left, right, choice, cat, True, ms, at))
                k += 1
                continue
            u = rng.random()
            if u < tie:
                choice = "tie"
            elif u < tie + both_bad:
                choice = "both_bad"
            else:
                pa = 1.0 / (1.0 + 10 ** ((strengths[b] - strengths[a]) / 400.0)) + left_bias
                choice = "left" if rng.random() < pa else "right"
            rows.append(vote(pid, f"q{prompt:02d}", models[a], models[b], choice, cat, False, ms, at))
            k += 1
    return rows


def datasets():
    rng = np.random.default_rng(20261127)
    sets = {}
    sets["basic"] = (simulate(rng, ["SDXL", "SSD-1B", "distilled", "teacher"], [0, -30, 20, 40],
                              participants=40, prompts=12, n_per_participant=20,
                              gold_every=10, fail_rate=0.1), 0.05)
    sets["large"] = (simulate(rng, ["a", "b", "c", "d", "e"], [0, 15, 30, 60, 200],
                              participants=40, prompts=50, n_per_participant=150,
                              categories=("x", "y")), 0.1)
    # C never wins or ties: the MLE does not exist, the prior fallback is used.
    never = []
    for i in range(30):
        never.append(vote(f"u{i % 4}", f"q{i % 4}", "A", "B", ["left", "right", "tie"][i % 3]))
        never.append(vote(f"u{i % 5}", f"q{i % 4}", "C", "B", "right"))
        if i % 2:
            never.append(vote(f"u{i % 5}", f"q{i % 4}", "A", "C", "left"))
    sets["never_wins"] = (never, 0.05)
    # Two parts that never met: {A, B} and {C, D}.
    disc = []
    for i in range(24):
        disc.append(vote(f"u{i % 6}", f"q{i % 3}", "A", "B", ["left", "right", "left", "tie"][i % 4]))
        disc.append(vote(f"u{i % 6}", f"q{i % 3}", "D", "C", ["left", "right", "right"][i % 3]))
    sets["disconnected"] = (disc, 0.05)
    sets["single_participant"] = (simulate(rng, ["m1", "m2", "m3"], [0, 50, 100],
                                           participants=1, prompts=5, n_per_participant=40), 0.05)
    nodec = [vote(f"u{i % 3}", f"q{i % 2}", "X", "Y", ["tie", "both_bad"][i % 2]) for i in range(10)]
    sets["no_decisive"] = (nodec, 0.05)
    sets["sequential"] = (sequential_rows(), 0.05)
    return sets


def sequential_rows():
    """Votes whose file order is not their time order (shuffled, with equal times and a few
    rows without a time), one clear pair and one close pair, so the anytime-valid results
    depend on the order rule."""
    rng = np.random.default_rng(16)
    rows = []
    t0 = 1_790_000_000
    for i in range(900):
        a, b, pa = [("A", "B", 0.68), ("A", "C", 0.53), ("B", "C", 0.5)][i % 3]
        u = rng.random()
        choice = "tie" if u < 0.08 else ("left" if rng.random() < pa else "right")
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        if choice in ("left", "right") and left != a:
            choice = "right" if choice == "left" else "left"
        # Several votes share one second; every 97th row has no time at all.
        at = "" if i % 97 == 5 else np.datetime_as_string(np.datetime64(t0 + i // 3 * 7, "s")) + "Z"
        rows.append(vote(f"s{i % 37:02d}", f"q{i % 11:02d}", left, right, choice, "", False, 900, at))
    order = rng.permutation(len(rows))
    return [rows[j] for j in order]


# ---------------------------------------------------------------- statistics

def pair_key(left, right):
    return (left, right) if left < right else (right, left)


def outcome(v):
    """Category relative to the unordered pair: a, b, tie, both_bad."""
    a, b = pair_key(v["model_left"], v["model_right"])
    c = v["choice"]
    if c in ("tie", "both_bad"):
        return c
    winner = v["model_left"] if c == "left" else v["model_right"]
    return "a" if winner == a else "b"


def pair_table(rows, alpha):
    counts = {}
    for v in rows:
        key = pair_key(v["model_left"], v["model_right"])
        c = counts.setdefault(key, {"a": 0, "b": 0, "tie": 0, "both_bad": 0})
        c[outcome(v)] += 1
    out = []
    for (a, b) in sorted(counts):
        c = counts[(a, b)]
        n = c["a"] + c["b"]
        e = dict(model_a=a, model_b=b, wins_a=c["a"], wins_b=c["b"], ties=c["tie"],
                 both_bad=c["both_bad"], n_decisive=n)
        if n > 0:
            rate = c["a"] / n
            e["win_rate_a"] = rate
            e["p_value"] = float(stats.binomtest(c["a"], n, 0.5).pvalue)
            e["ci_wilson"] = [float(x) for x in proportion_confint(c["a"], n, alpha, method="wilson")]
            e["ci_clopper_pearson"] = [float(x) for x in proportion_confint(c["a"], n, alpha, method="beta")]
            e["n_needed"] = n_needed(rate, alpha)
        else:
            e.update(win_rate_a=None, p_value=None, ci_wilson=None, ci_clopper_pearson=None, n_needed=None)
        out.append(e)
    tested = [e for e in out if e["p_value"] is not None]
    if tested:
        adj = multipletests([e["p_value"] for e in tested], alpha=alpha, method="holm")[1]
        for e, p in zip(tested, adj):
            e["p_holm"] = float(p)
            e["significant"] = bool(p < alpha)
    for e in out:
        e.setdefault("p_holm", None)
        e.setdefault("significant", False)
    seq = sequential_table(rows, alpha)
    if tested:
        adj = multipletests([seq[(e["model_a"], e["model_b"])][0] for e in tested],
                            alpha=alpha, method="holm")[1]
        for e, p in zip(tested, adj):
            p_value, cs = seq[(e["model_a"], e["model_b"])]
            e["sequential"] = dict(p_value=p_value, p_holm=float(p), cs=cs, decided=bool(p < alpha))
    for e in out:
        e.setdefault("sequential", None)
    return out


def time_key(v):
    at = v["created_at"]
    if not at:
        return (0, 0)
    t = datetime.datetime.fromisoformat(at.replace("Z", "+00:00"))
    return (1, t.timestamp())


def cs_edges(s, f, alpha):
    """The p with betaln(s+1, f+1) - s ln p - f ln(1-p) = ln(1/alpha), either side of s/n."""
    if s + f == 0:
        return [0.0, 1.0]
    c = special.betaln(s + 1, f + 1) + math.log(alpha)
    def h(p):
        return (s * math.log(p) if s else 0.0) + (f * math.log1p(-p) if f else 0.0) - c
    mode = s / (s + f)
    lo = 0.0 if s == 0 else optimize.brentq(h, 1e-300, mode, xtol=1e-15, maxiter=500)
    hi = 1.0 if f == 0 else optimize.brentq(h, mode, 1 - 1e-16, xtol=1e-15, maxiter=500)
    return [lo, hi]


def sequential_table(rows, alpha):
    """(anytime-valid p-value, confidence sequence) per pair."""
    ordered = sorted(rows, key=time_key)  # sorted() is stable: file order breaks ties
    state = {}
    for v in ordered:
        o = outcome(v)
        if o not in ("a", "b"):
            continue
        key = pair_key(v["model_left"], v["model_right"])
        st = state.setdefault(key, dict(s=0, f=0, max_ln=0.0, lo=0.0, hi=1.0))
        st["s" if o == "a" else "f"] += 1
        ln_lr = special.betaln(st["s"] + 1, st["f"] + 1) + (st["s"] + st["f"]) * math.log(2.0)
        st["max_ln"] = max(st["max_ln"], ln_lr)
        lo, hi = cs_edges(st["s"], st["f"], alpha)
        st["lo"], st["hi"] = max(st["lo"], lo), min(st["hi"], hi)
    return {k: (float(min(1.0, math.exp(-st["max_ln"]))), [float(st["lo"]), float(st["hi"])])
            for k, st in state.items()}


def n_needed(p1, alpha, power=POWER):
    if p1 == 0.5:
        return None
    za = stats.norm.isf(alpha / 2)
    zb = stats.norm.ppf(power)
    n = ((za * 0.5 + zb * math.sqrt(p1 * (1 - p1))) / (p1 - 0.5)) ** 2
    return int(math.ceil(n - 1e-9))


def bt_counts(rows):
    models = sorted({v["model_left"] for v in rows} | {v["model_right"] for v in rows})
    idx = {m: i for i, m in enumerate(models)}
    m = len(models)
    score = np.zeros((m, m))  # score[i, j]: i's wins against j plus half the ties/both-bad
    for v in rows:
        i, j = idx[v["model_left"]], idx[v["model_right"]]
        if v["choice"] == "left":
            score[i, j] += 1
        elif v["choice"] == "right":
            score[j, i] += 1
        else:
            score[i, j] += 0.5
            score[j, i] += 0.5
    return models, score


def neg_ll(theta, score, prior):
    d = theta[:, None] - theta[None, :]
    return -(np.sum(score * (d - np.logaddexp(0, d)))) + 0.5 * prior * np.sum(theta ** 2)


def neg_grad(theta, score, prior):
    d = theta[:, None] - theta[None, :]
    games = score + score.T
    resid = score - games * (1 / (1 + np.exp(-d)))  # i's score minus expectation vs j
    return -(resid.sum(axis=1)) + prior * theta


def neg_hess(theta, score, prior):
    d = theta[:, None] - theta[None, :]
    games = score + score.T
    s = 1 / (1 + np.exp(-d))
    w = games * s * (1 - s)
    h = -w
    np.fill_diagonal(h, w.sum(axis=1) - np.diag(w))
    return h + prior * np.eye(len(theta))


def fit_component(score):
    m = score.shape[0]
    if m == 1:
        return np.zeros(1), "mle"
    won = csr_matrix(score > 0)
    n_strong, _ = connected_components(won, directed=True, connection="strong")
    if n_strong == 1:
        # Maximum likelihood with theta_0 = 0 fixed (the likelihood is shift-invariant).
        def f(x):
            return neg_ll(np.concatenate([[0.0], x]), score, 0.0)

        def g(x):
            return neg_grad(np.concatenate([[0.0], x]), score, 0.0)[1:]

        def h(x):
            return neg_hess(np.concatenate([[0.0], x]), score, 0.0)[1:, 1:]

        res = optimize.minimize(f, np.zeros(m - 1), jac=g, hess=h, method="trust-exact",
                                options={"gtol": 1e-12, "maxiter": 1000})
        theta = np.concatenate([[0.0], polish(res.x, g, h)])
        theta -= theta.mean()
        mm = bt_mm(score)
        assert np.max(np.abs(theta - mm)) * ELO < 1e-7, (theta, mm)
        return theta, "mle"
    res = optimize.minimize(lambda t: neg_ll(t, score, PRIOR_PRECISION), np.zeros(m),
                            jac=lambda t: neg_grad(t, score, PRIOR_PRECISION),
                            hess=lambda t: neg_hess(t, score, PRIOR_PRECISION),
                            method="trust-exact", options={"gtol": 1e-12, "maxiter": 1000})
    theta = polish(res.x, lambda t: neg_grad(t, score, PRIOR_PRECISION),
                   lambda t: neg_hess(t, score, PRIOR_PRECISION))
    return theta, "prior_fallback"


def polish(x, grad, hess):
    """trust-exact stops once its model stops predicting improvement (about 1e-5 in the
    gradient); a few plain Newton steps take it to machine precision."""
    for _ in range(8):
        x = x - np.linalg.solve(hess(x), grad(x))
    assert np.max(np.abs(grad(x))) < 1e-8, grad(x)
    return x


def bt_mm(score):
    """Hunter's (2004) MM iteration for Bradley-Terry, run until it stops moving."""
    games = score + score.T
    wins = score.sum(axis=1)
    p = np.ones(score.shape[0])
    for _ in range(1_000_000):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = wins / denom
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(np.log(new) - np.log(p))) < 1e-15:
            p = new
            break
        p = new
    t = np.log(p)
    return t - t.mean()


def ratings(rows):
    models, score = bt_counts(rows)
    games = score + score.T
    n_comp, labels = connected_components(csr_matrix(games > 0), directed=False)
    out = {}
    estimators = []
    for c in range(n_comp):
        members = [i for i in range(len(models)) if labels[i] == c]
        theta, est = fit_component(score[np.ix_(members, members)])
        for i, t in zip(members, theta):
            out[models[i]] = 1000.0 + ELO * t
        estimators.append(est)
    comps = sorted(sorted(models[i] for i in range(len(models)) if labels[i] == c) for c in range(n_comp))
    return out, comps, estimators


def agreement(rows):
    cats = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}
    first = {}
    for v in rows:
        item = (v["prompt_id"],) + pair_key(v["model_left"], v["model_right"])
        first.setdefault((item, v["participant_id"]), cats[outcome(v)])
    raters_per_item = {}
    for (item, p), value in first.items():
        raters_per_item.setdefault(item, {})[p] = value
    items = sorted(i for i, r in raters_per_item.items() if len(r) >= 2)
    if not items:
        return None
    people = sorted({p for i in items for p in raters_per_item[i]})
    data = np.full((len(people), len(items)), np.nan)
    for col, i in enumerate(items):
        for p, value in raters_per_item[i].items():
            data[people.index(p), col] = value
    alpha = float(krippendorff.alpha(reliability_data=data, value_domain=[0, 1, 2, 3],
                                     level_of_measurement="nominal"))
    sizes = [len(raters_per_item[i]) for i in items]
    counts = {s: sizes.count(s) for s in set(sizes)}
    modal = max(counts, key=lambda s: (counts[s], s))
    table = np.zeros((0, 4))
    for i in items:
        if len(raters_per_item[i]) == modal:
            row = np.zeros(4)
            for value in raters_per_item[i].values():
                row[value] += 1
            table = np.vstack([table, row])
    p_cat = table.sum(axis=0) / table.sum()
    kappa = None if abs(1 - np.sum(p_cat ** 2)) < 1e-15 else float(fleiss_kappa(table, method="fleiss"))
    return dict(n_items=len(items), krippendorff_alpha=None if math.isnan(alpha) else alpha,
                fleiss_kappa=kappa, fleiss_n_items=int(table.shape[0]), fleiss_raters_per_item=int(modal))


def participants(rows):
    gold = {}
    for v in rows:
        if v["gold"] == "true":
            left_broken = v["model_left"].endswith(BROKEN)
            passed = (v["choice"] == "left" and not left_broken) or (v["choice"] == "right" and left_broken)
            g = gold.setdefault(v["participant_id"], [0, 0])
            g[0] += 1
            g[1] += int(passed)
    times = [int(v["response_ms"]) for v in rows if v["response_ms"] != ""]
    rows_ = sum(g[0] for g in gold.values())
    passed = sum(g[1] for g in gold.values())
    failed = sorted(p for p, g in gold.items() if g[1] < g[0])
    groups = {}
    for n, k in gold.values():
        groups[(n, k)] = groups.get((n, k), 0) + 1
    results = [dict(gold_rows=n, gold_passed=k, participants=c) for (n, k), c in sorted(groups.items())]
    return dict(count=len({v["participant_id"] for v in rows}), with_gold=len(gold), gold_rows=rows_,
                gold_passed=passed, gold_pass_rate=passed / rows_ if rows_ else None,
                failed_gold=len(failed), failed_gold_ids=failed, gold_results=results,
                median_response_ms=float(np.median(times)) if times else None)


# ---------------------------------------------------------------- bootstrap replay
#
# The bootstrap cannot be compared with another library's (different random numbers), so
# the script replays ArenaXL's documented procedure with the same generator: SplitMix64,
# round r seeded from (seed, r), clusters = participants in first-seen order, each round
# draws as many clusters as there are with replacement, refits every component, and the
# interval is numpy's linear-interpolation percentile. This checks the resampling, the
# refits and the percentiles end to end.

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next() * n) >> 64

    @staticmethod
    def stream(seed, index):
        base = SplitMix64(seed ^ ((index * 0xD1B54A32D192ED03) & MASK))
        return SplitMix64(base.next())


def bootstrap_replay(rows, rounds, seed, alpha):
    models = sorted({v["model_left"] for v in rows} | {v["model_right"] for v in rows})
    idx = {m: i for i, m in enumerate(models)}
    m = len(models)
    clusters = []
    cid = {}
    for v in rows:
        if v["participant_id"] not in cid:
            cid[v["participant_id"]] = len(clusters)
            clusters.append(np.zeros((m, m)))
        sc = clusters[cid[v["participant_id"]]]
        i, j = idx[v["model_left"]], idx[v["model_right"]]
        if v["choice"] == "left":
            sc[i, j] += 1
        elif v["choice"] == "right":
            sc[j, i] += 1
        else:
            sc[i, j] += 0.5
            sc[j, i] += 0.5
    full = sum(clusters)
    n_comp, labels = connected_components(csr_matrix((full + full.T) > 0), directed=False)
    parts = [[i for i in range(m) if labels[i] == c] for c in range(n_comp)]
    samples = np.zeros((rounds, m))
    fallback = {tuple(p): 0 for p in parts}
    c = len(clusters)
    for r in range(rounds):
        rng = SplitMix64.stream(seed, r)
        mult = np.zeros(c)
        for _ in range(c):
            mult[rng.below(c)] += 1
        score = sum(k * sc for k, sc in zip(mult, clusters))
        for part in parts:
            theta, est = fit_component(score[np.ix_(part, part)])
            samples[r, part] = 1000.0 + ELO * (theta - theta.mean())
            fallback[tuple(part)] += est == "prior_fallback"
    ci = {}
    for k, name in enumerate(models):
        lo, hi = np.percentile(samples[:, k], [100 * alpha / 2, 100 * (1 - alpha / 2)])
        ci[name] = [float(lo), float(hi)]
    rank_ub = {}
    for part in parts:
        for i in part:
            above = sum(ci[models[j]][0] > ci[models[i]][1] for j in part)
            rank_ub[models[i]] = 1 + int(above)
    return dict(rounds=rounds, seed=seed, ci=ci, rank_ub=rank_ub,
                fallback_rounds={",".join(models[i] for i in p): n for p, n in fallback.items()})


def expected(rows, alpha, exclude_failed=False, bootstrap=None):
    part = participants(rows)
    failed = set(part["failed_gold_ids"]) if exclude_failed else set()
    comp = [v for v in rows if v["gold"] != "true" and v["participant_id"] not in failed]
    left = sum(v["choice"] == "left" for v in comp)
    right = sum(v["choice"] == "right" for v in comp)
    rating, comps, estimators = ratings(comp) if comp else ({}, [], [])
    cats = sorted({v["category"] for v in comp if v["category"]})
    return dict(
        alpha=alpha,
        exclude_failed_gold=exclude_failed,
        n_votes=len(comp),
        n_participants=len({v["participant_id"] for v in comp}),
        n_prompts=len({v["prompt_id"] for v in comp}),
        pairs=pair_table(comp, alpha),
        ratings=rating,
        components=comps,
        estimators=estimators,
        position_bias=dict(left_wins=left, right_wins=right,
                           p_value=float(stats.binomtest(left, left + right, 0.5).pvalue) if left + right else None),
        agreement=agreement(comp),
        categories=[dict(category=c, pairs=pair_table([v for v in comp if v["category"] == c], alpha)) for c in cats],
        participants=part,
        bootstrap=bootstrap_replay(comp, bootstrap[0], bootstrap[1], alpha) if bootstrap else None,
    )


# ---------------------------------------------------------------- far tails

# (k, n, p) for the exact binomial test: p-values from 1e-300 to 1 and n up to 1,000,000,
# where a library's incomplete beta function shows its accuracy (issue: statrs vs hand-written).
TAIL_TESTS = [
    (0, 200, 0.5), (3, 200, 0.5), (10, 400, 0.5), (100, 1000, 0.5), (0, 996, 0.5),
    (40, 1000, 0.5), (960, 1000, 0.5), (4_000, 10_000, 0.5), (48_000, 100_000, 0.5),
    (45_000, 100_000, 0.5), (55_000, 100_000, 0.5), (50_400, 100_000, 0.5),
    (499_000, 1_000_000, 0.5), (500_700, 1_000_000, 0.5), (492_250, 1_000_000, 0.5),
    (484_850, 1_000_000, 0.5), (515_000, 1_000_000, 0.5), (480_000, 1_000_000, 0.5),
    (1, 50, 0.3), (30, 50, 0.3), (3_000, 10_000, 0.27),
]
# (k, n, alpha) for the Clopper-Pearson and Wilson intervals.
TAIL_INTERVALS = [
    (0, 1_000_000, 0.05), (1, 1_000_000, 0.05), (999_999, 1_000_000, 0.05),
    (492_250, 1_000_000, 0.05), (500_000, 1_000_000, 1e-10), (1, 200, 1e-10),
    (3, 10, 0.05), (199, 200, 0.001), (48_000, 100_000, 0.01), (7, 1_000_000, 1e-6),
]
TAIL_QUANTILES = [1e-300, 1e-50, 1e-10, 0.025, 0.2, 0.8, 0.975, 1 - 1e-12]
TAIL_POWER = [(0.51, 0.05, 0.8), (0.6, 0.001, 0.9), (0.45, 1e-8, 0.99), (0.999, 0.05, 0.5)]
TAIL_LN_BETA = [(1.0, 1.0), (11.0, 3.0), (492_251.0, 507_751.0), (1.0, 1_000_001.0), (0.5, 0.5)]


def tails():
    def ci(method, k, n, alpha):
        lo, hi = proportion_confint(k, n, alpha=alpha, method=method)
        return [float(lo), float(hi)]

    return dict(
        binomtest=[dict(k=k, n=n, p=p, pvalue=float(stats.binomtest(k, n, p).pvalue))
                   for k, n, p in TAIL_TESTS],
        intervals=[dict(k=k, n=n, alpha=a, wilson=ci("wilson", k, n, a), beta=ci("beta", k, n, a))
                   for k, n, a in TAIL_INTERVALS],
        norm_ppf=[dict(p=p, x=float(stats.norm.ppf(p))) for p in TAIL_QUANTILES],
        power=[dict(p1=p1, alpha=a, power=pw, n=n_needed(p1, a, pw)) for p1, a, pw in TAIL_POWER],
        ln_beta=[dict(a=a, b=b, value=float(special.betaln(a, b))) for a, b in TAIL_LN_BETA],
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tails.expected.json"), "w") as f:
        json.dump(tails(), f, indent=1, sort_keys=True)
    print("tails: far-tail values", file=sys.stderr)
    if sys.argv[1:] == ["tails"]:
        return  # only the far-tail file; the data sets' fixtures stay as they are
    header = ["participant_id", "prompt_id", "model_left", "model_right", "choice",
              "category", "gold", "response_ms", "created_at"]
    for name, (rows, alpha) in datasets().items():
        with open(os.path.join(OUT, f"{name}.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        replay = {"basic": (200, 3), "never_wins": (200, 5), "disconnected": (100, 11)}.get(name)
        exp = expected(rows, alpha, bootstrap=replay)
        if name == "basic":
            exp_excl = expected(rows, alpha, exclude_failed=True)
            with open(os.path.join(OUT, f"{name}.exclude.expected.json"), "w") as f:
                json.dump(exp_excl, f, indent=1, sort_keys=True)
        with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
            json.dump(exp, f, indent=1, sort_keys=True)
        print(f"{name}: {len(rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
