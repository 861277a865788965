"""The gate's statistics: sklearn's metrics, a calibrated DeLong test, and a fast bootstrap equal to the naive one."""

from __future__ import annotations

import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from conveyor.gate import statistics
from conveyor.gate.statistics import (
    HIGHER_IS_BETTER,
    METRICS,
    Comparison,
    DeLongTest,
    compare_models,
    delong_test,
    point_metrics,
    resample_counts,
)
from tests.test_layout import ML_MODULES


class Rows(NamedTuple):
    labels: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    entities: np.ndarray
    slices: np.ndarray


def machines(count: int = 60, rows: int = 20, *, edge: float = 0.4, seed: int = 0, decimals: int | None = None) -> Rows:
    """Rows of machines that share their label and a random effect; the challenger separates the classes by ``edge``."""
    rng = np.random.default_rng(seed)
    failing = np.arange(count) % 4 == 0
    entities = np.repeat(np.arange(count), rows)
    labels = np.repeat(failing, rows).astype(float)
    base = -1.5 + 1.0 * labels + np.repeat(rng.normal(0, 0.7, count), rows)
    champion = 1 / (1 + np.exp(-(base + rng.normal(0, 1, len(labels)))))
    challenger = 1 / (1 + np.exp(-(base + edge * labels + rng.normal(0, 1, len(labels)))))
    if decimals is not None:  # few distinct scores, many ties; none at 0 or 1, where sklearn clips at 2.2e-16
        step = 10.0**-decimals
        champion, challenger = (np.clip(np.round(p, decimals), step, 1 - step) for p in (champion, challenger))
    slices = np.repeat(np.array(["A", "B", "C"])[np.arange(count) % 3], rows)
    return Rows(labels, challenger, champion, entities, slices)


def legacy_calibration_error(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The definition models/evaluation.py recorded before the gate existed, verbatim."""
    bins = np.minimum((probabilities * 10).astype(int), 9)
    return float(
        sum(
            abs(labels[bins == b].mean() - probabilities[bins == b].mean()) * (bins == b).mean()
            for b in np.unique(bins)
        )
    )


def weighted_metrics(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """sklearn's metrics of rows repeated ``weights`` times: the naive bootstrap's recomputation."""
    bins = np.minimum((probabilities * 10).astype(int), 9)
    gaps = np.bincount(bins, weights=weights * (labels - probabilities), minlength=10)
    return {
        "roc_auc": roc_auc_score(labels, probabilities, sample_weight=weights),
        "pr_auc": average_precision_score(labels, probabilities, sample_weight=weights),
        "log_loss": log_loss(labels, probabilities, sample_weight=weights, labels=[0, 1]),
        "brier": brier_score_loss(labels, probabilities, sample_weight=weights),
        "calibration_error": float(np.abs(gaps).sum() / weights.sum()),
    }


def naive_intervals(data: Rows, counts: np.ndarray, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Per metric: (lower, upper) of challenger, champion and improvement, recomputing every metric per resample."""
    values = {metric: np.empty((len(counts), 3)) for metric in METRICS}
    for b, row in enumerate(counts):
        weights = row[data.entities].astype(float)
        chosen = weights > 0
        scored = [weighted_metrics(data.labels[chosen], p[chosen], weights[chosen]) for p in data[1:3]]
        for metric in METRICS:
            new, old = scored[0][metric], scored[1][metric]
            values[metric][b] = new, old, new - old if metric in HIGHER_IS_BETTER else old - new
    tail = (1 - confidence) / 2
    return {metric: np.quantile(v, [tail, 1 - tail], axis=0).T for metric, v in values.items()}


def fast_intervals(comparison: Comparison, group: str | None = None) -> dict[str, np.ndarray]:
    """Per metric: (lower, upper) of challenger, champion and improvement, as compare_models found them."""
    result = comparison.overall if group is None else comparison.slices[group]
    out = {}
    for metric, compared in result.metrics.items():
        assert compared is not None and compared.champion is not None and compared.improvement is not None
        estimates = (compared.challenger, compared.champion, compared.improvement)
        out[metric] = np.array([(e.lower, e.upper) for e in estimates], dtype=float)
    return out


def numbers(comparison: Comparison) -> dict[str, float]:
    """Every number of a comparison by its path in the JSON."""
    found = {}

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, int | float):
            found[path] = float(node)

    walk(comparison.model_dump(), "")
    return found


def strata_of(labels: np.ndarray, entities: np.ndarray) -> np.ndarray:
    return np.bincount(entities, weights=labels) > 0


# Point metrics


@pytest.mark.parametrize("decimals", [None, 2], ids=["continuous", "tied"])
def test_point_metrics_equal_sklearns_and_the_recorded_definitions(decimals: int | None) -> None:
    data = machines(decimals=decimals)
    for probabilities in (data.challenger, data.champion, data.challenger.astype(np.float32)):
        metrics = point_metrics(data.labels, probabilities)
        expected = probabilities.astype(float)
        assert metrics["roc_auc"] == pytest.approx(roc_auc_score(data.labels, expected), abs=1e-12)
        assert metrics["pr_auc"] == pytest.approx(average_precision_score(data.labels, expected), abs=1e-12)
        assert metrics["log_loss"] == pytest.approx(log_loss(data.labels, expected), abs=1e-12)
        assert metrics["brier"] == pytest.approx(brier_score_loss(data.labels, expected), abs=1e-12)
        assert metrics["calibration_error"] == pytest.approx(legacy_calibration_error(data.labels, expected), abs=1e-12)
        assert list(metrics) == list(METRICS)


def test_log_loss_clips_certain_wrong_answers_at_1e_15() -> None:
    assert statistics.log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-np.log(1e-15), abs=1e-3)


def test_ranking_metrics_need_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        point_metrics(np.zeros(5), np.full(5, 0.2))


# DeLong


def slow_delong(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong, DeLong and Clarke-Pearson (1988) by their definition, O(m n): the difference and its variance."""
    components = []
    for scores in (a, b):
        pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    v10, v01 = (np.stack(parts) for parts in zip(*components, strict=True))
    covariance = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    return float(v10[0].mean() - v10[1].mean()), float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "tied"])
def test_delong_equals_its_definition_and_sklearns_aucs(decimals: int | None) -> None:
    data = machines(count=12, rows=10, decimals=decimals)
    test = delong_test(data.labels, data.challenger, data.champion)
    difference, variance = slow_delong(data.labels, data.challenger, data.champion)
    assert test.challenger_auc == pytest.approx(roc_auc_score(data.labels, data.challenger), abs=1e-12)
    assert test.champion_auc == pytest.approx(roc_auc_score(data.labels, data.champion), abs=1e-12)
    assert test.difference == pytest.approx(difference, abs=1e-12)
    assert test.standard_error == pytest.approx(np.sqrt(variance), rel=1e-9)
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(difference) / np.sqrt(variance)), rel=1e-9)
    assert test.lower == pytest.approx(difference - 1.959964 * np.sqrt(variance), abs=1e-6)


def test_delong_of_identical_scores_is_no_evidence() -> None:
    data = machines()
    test = delong_test(data.labels, data.champion, data.champion)
    assert (test.difference, test.z, test.p_value) == (0.0, 0.0, 1.0)


def test_delong_of_a_perfect_model_against_a_constant_one_is_certain_and_survives_json() -> None:
    test = delong_test([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.5] * 4)
    assert (test.difference, test.standard_error, test.z, test.p_value) == (0.5, 0.0, np.inf, 0.0)
    assert DeLongTest.model_validate_json(test.model_dump_json()) == test


def test_delong_finds_a_clearly_better_model() -> None:
    data = machines(edge=1.5)
    test = delong_test(data.labels, data.challenger, data.champion)
    assert test.difference > 0
    assert test.p_value < 0.01
    assert test.lower > 0


def test_delong_p_values_are_uniform_when_both_models_are_equally_good() -> None:
    rng = np.random.default_rng(7)
    labels = np.repeat([0.0, 1.0], 100)
    p_values = [
        delong_test(labels, labels + rng.normal(0, 1.5, 200), labels + rng.normal(0, 1.5, 200)).p_value
        for _ in range(200)
    ]
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(np.array(p_values) < 0.05) <= 0.10


# Bootstrap


def test_fast_bootstrap_equals_naive_resampling_where_scores_have_few_values() -> None:
    data = machines(count=48, rows=15, decimals=2)
    comparison = compare_models(*data, resamples=80, seed=3)
    for group, name in [(0, None), (3, "C")]:
        member = np.ones(len(data.labels), bool) if name is None else data.slices == name
        rows = Rows(*(array[member] for array in data))
        entities = np.unique(rows.entities, return_inverse=True)[1]
        rows = rows._replace(entities=entities)
        counts = resample_counts(strata_of(rows.labels, entities), 80, seed=3, group=group)
        naive = naive_intervals(rows, counts)
        for metric, bounds in fast_intervals(comparison, name).items():
            np.testing.assert_allclose(bounds, naive[metric], rtol=0, atol=1e-12, err_msg=f"{name} {metric}")


def test_fast_bootstrap_agrees_with_naive_resampling_on_binned_continuous_scores() -> None:
    data = machines(count=600, rows=10, edge=0.6, seed=4)  # 6,000 distinct scores of 600 machines: binned
    comparison = compare_models(data.labels, data.challenger, data.champion, data.entities, resamples=120, seed=5)
    counts = resample_counts(strata_of(data.labels, data.entities), 120, seed=5)
    naive = naive_intervals(data, counts)
    tolerance = {"roc_auc": 5e-5, "pr_auc": 5e-4}
    for metric, bounds in fast_intervals(comparison).items():
        np.testing.assert_allclose(bounds, naive[metric], rtol=0, atol=tolerance.get(metric, 1e-12), err_msg=metric)


def test_resamples_keep_each_strata_size() -> None:
    strata = np.arange(30) % 5 == 0
    counts = resample_counts(strata, 500, seed=1)
    assert counts.shape == (500, 30)
    assert (counts[:, strata].sum(axis=1) == strata.sum()).all()
    assert (counts[:, ~strata].sum(axis=1) == (~strata).sum()).all()
    assert counts.mean(axis=0) == pytest.approx(np.ones(30), abs=0.15)
    assert not (resample_counts(strata, 500, seed=2) == counts).all()


def test_chunking_the_resamples_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = machines(count=24, rows=40)
    whole = compare_models(*data, resamples=60)
    monkeypatch.setattr(statistics, "_CHUNK_BYTES", 1)  # one resample per chunk
    chunked = numbers(compare_models(*data, resamples=60))
    assert chunked == pytest.approx(numbers(whole), rel=0, abs=1e-14)  # sums in another order


def test_a_clearly_better_challenger_has_a_lower_bound_above_zero() -> None:
    data = machines(count=80, rows=20, edge=2.0)
    result = compare_models(*data, resamples=300).overall
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier"):
        compared = result.metrics[metric]
        assert compared is not None and compared.improvement is not None
        assert compared.improvement.lower is not None and compared.improvement.lower > 0, metric
    assert result.delong is not None and result.delong.p_value < 0.01


def test_identical_models_improve_by_exactly_nothing() -> None:
    data = machines()
    result = compare_models(data.labels, data.champion, data.champion, data.entities, resamples=200).overall
    for compared in result.metrics.values():
        assert compared is not None and compared.improvement is not None
        assert (compared.improvement.lower, compared.improvement.value, compared.improvement.upper) == (0, 0, 0)


def test_equally_good_models_have_an_interval_around_zero() -> None:
    data = machines(count=80, rows=20, edge=0.0, seed=2)
    result = compare_models(*data, resamples=300).overall
    for metric, compared in result.metrics.items():
        assert compared is not None and compared.improvement is not None
        assert compared.improvement.lower is not None and compared.improvement.upper is not None
        assert compared.improvement.lower < 0 < compared.improvement.upper, metric


def test_the_first_model_gets_its_metrics_and_intervals_without_a_champion() -> None:
    data = machines()
    comparison = compare_models(data.labels, data.challenger, None, data.entities, data.slices, resamples=100)
    for result in (comparison.overall, *comparison.slices.values()):
        assert result.delong is None
        for metric, compared in result.metrics.items():
            assert compared is not None and compared.champion is None and compared.improvement is None
            challenger = compared.challenger
            assert challenger.lower is not None and challenger.upper is not None
            assert challenger.lower <= challenger.value <= challenger.upper, metric
    overall_auc = comparison.overall.metrics["roc_auc"]
    assert overall_auc is not None
    assert overall_auc.challenger.value == pytest.approx(roc_auc_score(data.labels, data.challenger), abs=1e-12)


def test_a_slice_with_one_class_reports_the_ranking_metrics_as_not_computable() -> None:
    data = machines()
    slices = np.where(data.labels == 1, "failing", data.slices)  # "A", "B", "C" hold no failing machine
    comparison = compare_models(data.labels, data.challenger, data.champion, data.entities, slices, resamples=50)
    assert list(comparison.slices) == ["A", "B", "C", "failing"]
    for name in ("A", "failing"):
        result = comparison.slices[name]
        assert result.metrics["roc_auc"] is None and result.metrics["pr_auc"] is None
        assert result.delong is None
        log_loss_ = result.metrics["log_loss"]
        assert log_loss_ is not None and log_loss_.improvement is not None and log_loss_.improvement.lower is not None
    assert comparison.overall.metrics["roc_auc"] is not None


def test_the_comparison_survives_json_and_is_reproducible() -> None:
    data = machines()
    comparison = compare_models(*data, resamples=100, seed=11)
    assert Comparison.model_validate_json(comparison.model_dump_json()) == comparison
    assert compare_models(*data, resamples=100, seed=11) == comparison
    assert compare_models(*data, resamples=100, seed=12) != comparison
    assert comparison.overall.entities == 60 and comparison.overall.positive_entities == 15


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": np.zeros(3)}, "lengths differ"),
        ({"champion": np.full(1200, 1.5)}, r"champion's probabilities must lie in \[0, 1\], but 1200 of them"),
        ({"challenger": np.r_[np.nan, np.full(1199, 0.5)]}, "but 1 of them do not or are NaN"),
        ({"labels": np.zeros(1200)}, "All rows share one label"),
        ({"labels": np.full(1200, 2.0)}, "Labels must be 0 or 1"),
        # Every failing machine's rows under one entity: one positive entity.
        ({"entities": np.where(np.arange(1200) // 20 % 4 == 0, 0, np.arange(1200) // 20)}, "there are 1 entities with"),
        ({"resamples": 0}, "at least 1 resample"),
        ({"confidence": 1.0}, "strictly between 0 and 1"),
    ],
)
def test_bad_input_is_explained_in_one_sentence(change: dict[str, object], message: str) -> None:
    data = machines()
    arguments: dict[str, object] = {**data._asdict(), "resamples": 10, **change}
    with pytest.raises(ValueError, match=message):
        compare_models(**arguments)  # type: ignore[arg-type]


def test_the_statistics_load_no_ml_library() -> None:
    probe = f"import sys, conveyor.gate.statistics; print(','.join(m for m in {ML_MODULES!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == ""
