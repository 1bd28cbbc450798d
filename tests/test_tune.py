"""make tune: candidates are scored after every epoch on validation rows carved from the training rows."""
import dataclasses

import numpy as np

from pipeline import config, preprocess, train, tune


def test_candidates_are_scored_every_epoch_and_fresh_negatives_are_redrawn(raw_dir, monkeypatch):
    data = preprocess.preprocess(*preprocess.read_raw(raw_dir))
    tuning = tune.carve_validation(data, users_sample=50)
    assert len(tuning.train) < len(data.train)  # validation rows are carved out of the training rows
    test_pairs = set(zip(data.test["user_id"], data.test["movie_id"]))
    assert not test_pairs & set(zip(tuning.test["user_id"], tuning.test["movie_id"]))  # never the test rows
    draws = []
    real = train.sample_unrated
    monkeypatch.setattr(train, "sample_unrated", lambda *a, **k: draws.append(real(*a, **k)) or draws[-1])
    for fresh in (False, True):
        draws.clear()
        cfg = dataclasses.replace(config.MODEL_DEFAULTS["autoint_ranking"], epochs=2, batch_size=1024,
                                  fresh_negatives=fresh)
        records = tune.run_candidate(cfg, tuning, data.encoders.dims(), progress=lambda line: None)
        assert [record["epoch"] for record in records] == [1, 2]
        assert all(0 <= record["full_catalog/recall@10"] <= 1 for record in records)
        assert len(draws) == (2 if fresh else 1)
    assert (draws[0]["movie_id"].to_numpy() != draws[1]["movie_id"].to_numpy()).mean() > 0.5
    assert np.array_equal(draws[0]["user_id"].to_numpy(), draws[1]["user_id"].to_numpy())
