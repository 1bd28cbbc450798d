"""The report's judgements from hand-made metrics: who loses to which baseline, and which targets are met."""

from pipeline import config_evaluation
from pipeline.evaluation import report, report_sections


def protocols(auc=None, logloss=None, recall=None, ndcg=None):
    return {"rated": {"auc": auc, "logloss": logloss}, "full_catalog": {"recall@10": recall, "ndcg@10": ndcg}}


def test_beaten_by_names_each_loss_and_reads_logloss_the_other_way_round():
    results = {
        "models": {"autoint": protocols(auc=0.70, logloss=0.60, recall=0.10)},
        "baselines": {
            "positive_rate": protocols(auc=0.75, logloss=0.55, recall=0.05),
            "most_popular": protocols(auc=0.65, logloss=None, recall=0.10),
        },
    }
    lines = report.beaten_by(results)
    assert lines == [
        "AutoInt (reference) does not beat per-movie positive rate (smoothed) on rated auc: 0.7000 vs 0.7500",
        "AutoInt (reference) does not beat per-movie positive rate (smoothed) on rated logloss: 0.6000 vs 0.5500",
        "AutoInt (reference) does not beat most popular on full_catalog recall@10: 0.1000 vs 0.1000",  # a tie is no win
    ]
    results["models"]["autoint"]["rated"]["logloss"] = 0.50  # lower is better
    assert not any("logloss" in line for line in report.beaten_by(results))


def test_targets_compare_the_two_stage_models_with_ease_and_the_tuned_models_with_their_goals():
    results = {
        "models": {
            "autoint_mlp_two_stage": {**protocols(recall=0.2208, ndcg=0.3700), "train_seconds": 250},
            "autoint_tuned": {"rated": {"auc": 0.8301}, "reference_protocol": {"ndcg@10": 0.6899}, "train_seconds": 1},
        },
        "baselines": {"ease": protocols(recall=0.2143, ndcg=0.3728)},
    }
    lines = report.targets(results)
    assert (
        "met: AutoInt+MLP (two-stage) random split full-catalogue recall@10 0.2208 = 1.030 × EASE's 0.2143" in lines[0]
    )
    assert lines[1].startswith("NOT met: AutoInt+MLP (two-stage) random split full-catalogue ndcg@10 0.3700 = 0.992 ×")
    assert (
        lines[2]
        == f"met: AutoInt (tuned) AUC on rated test rows 0.8301 (target ≥ {config_evaluation.GOALS['tuned_auc']})"
    )
    assert lines[3].startswith("NOT met: AutoInt (tuned) reference-protocol NDCG@10 0.6899")
    assert lines[4] == "met: AutoInt+MLP (two-stage) (random) trained in 250 s (target ≤ 300 s)"
    # EASE is what the targets name even beside a stronger ALS row.
    results["baselines"]["als"] = protocols(recall=0.2220, ndcg=0.3793)
    assert report.targets(results)[0] == lines[0]


def test_without_an_ease_row_the_targets_name_the_retrieval_stage_alone():
    """A catalogue too large for EASE (config.RETRIEVAL["ease_max_movies"]) has no EASE row: the two-stage rows are
    held against the retrieval stage alone, by its kind."""
    results = {
        "data": {"retrieval": "als"},
        "models": {"autoint_mlp_two_stage": {**protocols(recall=0.11, ndcg=0.20), "train_seconds": 250}},
        "baselines": {"als": protocols(recall=0.10, ndcg=0.25), "most_popular": protocols(recall=0.2, ndcg=0.3)},
    }
    lines = report.targets(results)
    assert "recall@10 0.1100 = 1.100 × ALS's 0.1000" in lines[0] and lines[0].startswith("met")
    assert "ndcg@10 0.2000 = 0.800 × ALS's 0.2500" in lines[1] and lines[1].startswith("NOT met")


def test_newcomer_targets_hold_the_served_list_to_1_03_times_the_better_baseline_at_each_k():
    at = lambda recall, ndcg: {"recall@10": recall, "ndcg@10": ndcg}  # noqa: E731
    results = {
        "baselines": ["most_popular", "ease"],
        "test": {
            "1": {"most_popular": at(0.10, 0.40), "ease": at(0.05, 0.30), "served": at(0.104, 0.41), "users": 5},
            "10": {"most_popular": at(0.05, 0.30), "ease": at(0.07, 0.33), "served": at(0.071, 0.35), "users": 5},
        },
    }
    lines = report_sections.newcomer_targets(results)
    assert lines == [
        "met: 1 given, recall@10 0.1040 = 1.040 × most popular's 0.1000 (target ≥ 1.03 ×)",
        "**missed**: 1 given, ndcg@10 0.4100 = 1.025 × most popular's 0.4000 (target ≥ 1.03 ×)",
        "**missed**: 10 given, recall@10 0.0710 = 1.014 × EASE (retrieval alone)'s 0.0700 (target ≥ 1.03 ×)",
        "met: 10 given, ndcg@10 0.3500 = 1.061 × EASE (retrieval alone)'s 0.3300 (target ≥ 1.03 ×)",
    ]


def test_the_metrics_table_marks_what_a_model_has_no_number_for():
    results = {
        "models": {"autoint_two_stage": {"full_catalog": {"recall@10": 0.2, "ndcg@10": 0.3, "hr@10": 0.8}}},
        "baselines": {},
    }
    row = report.metrics_table(results).splitlines()[2]
    assert row == "| AutoInt (two-stage) | random | – | – | – | – | – | 0.2000 | 0.3000 | 0.8000 |"
