"""`dsnet-automl search --sampler nni-evolution` / `nni-tpe`: NNI's tuner proposes, the Optuna
SQLite study records every trial (dynamic and static), and a resumed run (here on Ray Tune)
feeds the study's history back to a fresh NNI tuner before it proposes."""

from __future__ import annotations

import json
import os
import sqlite3

import optuna
import pytest
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.integrations.nni import NNISampler
from dsnet_automl.search import load_study, run_search

runner = CliRunner()


def _rows(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


# slow (pytest -m slow): two searches, one on Ray, ~35 s on 2 cores; the default run keeps the
# NNI samplers' own tests (tests/integrations/test_nni.py) within the 10-minute budget
@pytest.mark.slow
def test_cli_search_nni_evolution_then_resume_with_nni_tpe_on_ray(make_study, monkeypatch) -> None:
    told: list[tuple[int, bool, str]] = []
    samplers: set[NNISampler] = set()
    after_trial = NNISampler.after_trial

    def spy(self, study, trial, state, values):  # which trials the NNI tuner itself proposed
        samplers.add(self)
        told.append((trial.number, trial.number in self._pending, state.name))
        return after_trial(self, study, trial, state, values)

    monkeypatch.setattr(NNISampler, "after_trial", spy)
    path = make_study("nni", trials=3, static_trials=3)
    result = runner.invoke(
        app,
        ["search", str(path), "--sampler", "nni-evolution", "--no-progress"]
        + ["--export-formats", "pt2"],
    )
    assert result.exit_code == 0, result.output
    cfg = load_study(path, sampler="nni-evolution")
    db = cfg.db_url.removeprefix("sqlite:///")
    # read the SQLite file directly (Optuna's schema), not through our code
    studies = dict(_rows(db, "SELECT study_name, study_id FROM studies"))
    assert set(studies) == {"nni", "nni-static", "nni-static-att"}
    for name, sid in studies.items():
        if name == "nni-static-att":  # one trial per static-front sub-net, asked by us
            continue
        states = _rows(db, f"SELECT state FROM trials WHERE study_id = {sid} ORDER BY number")
        assert states == [("COMPLETE",)] * 3, name
        (conf,) = _rows(
            db,
            f"SELECT value_json FROM study_user_attributes WHERE study_id = {sid}"
            " AND key = 'config'",
        )[0]
        assert json.loads(conf)["sampler"] == "nni-evolution"
    values = _rows(
        db,
        "SELECT v.value FROM trial_values v JOIN trials t USING (trial_id)"
        f" WHERE t.study_id = {studies['nni']}",
    )
    assert len(values) == 6 and all(0.0 <= v < 10.0 for (v,) in values)  # accuracy, latency
    assert (cfg.run_dir / "export" / "index.yaml").is_file()  # export unchanged
    # dynamic: trial 0 random (no search space yet), 1-2 proposed by NNI; static: the points
    # enqueued from the predicted static front, then NNI
    static = optuna.load_study(study_name="nni-static", storage=cfg.db_url)
    enqueued = [t.user_attrs.get("predicted_front", False) for t in static.trials]
    assert [own for _, own, _ in told] == [False, True, True] + [not e for e in enqueued]

    # resume with another NNI tuner on Ray Tune (2 workers): a fresh sampler in the Ray
    # searcher replays the 3 finished trials, then proposes both new ones
    told.clear()
    samplers.clear()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cfg = cfg.model_copy(update={"sampler": "nni-tpe", "trials": 5, "static_trials": 0})
    run_search(cfg, workers=2, progress=False)
    assert sorted(told) == [(3, True, "COMPLETE"), (4, True, "COMPLETE")]
    (ray_sampler,) = samplers
    assert ray_sampler._fed == {0, 1, 2, 3, 4}
    assert len(ray_sampler._tuner.tuner._history[("lam",)]) == 5
    states = _rows(db, f"SELECT state FROM trials WHERE study_id = {studies['nni']}")
    assert states == [("COMPLETE",)] * 5
