"""End-to-end search on a tiny supernet: trials, failures, resume after a kill, export, bundles,
a real optuna-dashboard process and the Ray Tune runner."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.search import export_study, load_study, run_search, run_trial
from dsnet_automl.search.study import load_existing
from tests._local import dashboard_studies, free_port


def _study(path: Path) -> optuna.Study:
    cfg = load_study(path)
    return optuna.load_study(study_name=cfg.name, storage=cfg.db_url)


def _complete(s: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return s.get_trials(states=(TrialState.COMPLETE,))


def test_search_export_run_and_failed_trial(make_study, tmp_path):
    path = make_study("fail", trials=3)
    cfg = load_study(path)
    calls = []

    def flaky(ctx, params, trial_dir, report=None):
        calls.append(params)
        if len(calls) == 2:
            raise RuntimeError("boom in trial two")
        return run_trial(ctx, params, trial_dir, report=report)

    res = run_search(cfg, progress=False, trial_fn=flaky)
    trials = res.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["error"] == "RuntimeError: boom in trial two"
    for t in _complete(res.study):
        # objectives are the gate's val accuracy and the share-weighted route latencies
        hist, lat = t.user_attrs["route_hist"], t.user_attrs["route_latency_ms"]
        assert t.values[1] == pytest.approx(
            sum(h * c for h, c in zip(hist, lat, strict=False)) / sum(hist)
        )
        assert 0.0 <= t.values[0] <= 1.0 and t.user_attrs["latency_source"] == "predicted"
    assert len(_complete(res.static)) == 3

    # re-run: the failed trial is retried once with its parameters, completed ones are kept
    first = [(t.number, t.values) for t in _complete(res.study)]
    res2 = run_search(cfg.model_copy(update={"trials": 3}), progress=False)
    t2 = res2.study.trials
    assert [t.number for t in _complete(res2.study)] == [0, 2, 3]
    assert t2[3].user_attrs["retry_of"] == 1 and t2[3].params == trials[1].params
    assert [(t.number, t.values) for t in t2[:3] if t.state == TrialState.COMPLETE] == first

    out = tmp_path / "export"
    index = export_study(res2.study, res2.static, out, hw="jetson", formats=("pt2",))
    assert index["latency_source"] == "predicted" and index["bundles"]
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "pareto.html").is_file()
    csv = pd.read_csv(out / "trials.csv")
    assert len(csv) == len(res2.study.trials) + len(res2.static.trials)
    assert set(csv["kind"]) == {"dynamic", "static"}
    b = out / index["bundles"][0]["bundle"]
    meta = yaml.safe_load((b / "bundle.yaml").read_text())
    assert meta["latency_source"] == "predicted" and meta["device"] == "jetson"
    assert meta["expected_latency_ms"] == pytest.approx(index["bundles"][0]["expected_latency_ms"])
    assert (b / "export" / "route_0.pt2").is_file() and (b / "export" / "runtime.json").is_file()
    dyn = DynamicNet.load(b)
    assert len(dyn.route_space) == len(meta["route_latency_ms"])
    r = CliRunner().invoke(app, ["run", str(b), "--data", "synthetic:64", "--split", "val"])
    assert r.exit_code == 0, r.output
    assert f"val top-1 {meta['accuracy']:.4f}" in r.output  # same gate, same val split
    r = CliRunner().invoke(
        app, ["export", str(path), "--out", str(tmp_path / "e2"), "--formats", "pt2"]
    )
    assert r.exit_code == 0 and (tmp_path / "e2" / "index.yaml").is_file(), r.output


@pytest.mark.fault(
    fault="Search killed mid-study",
    injected="SIGKILL of the `dsnet-automl search` process once a trial is complete",
    sees="nothing more: the process is gone",
    kept="completed trials in the study DB; the re-run continues the study to its trial count",
)
def test_kill_midway_and_resume(make_study):
    path = make_study("kill", trials=3, static_trials=0)
    exe = Path(sys.executable).parent / "dsnet-automl"
    log = path.with_suffix(".log").open("w")
    proc = subprocess.Popen([exe, "search", str(path), "--no-progress"], stdout=log, stderr=log)
    db = Path(load_study(path).db_url.removeprefix("sqlite:///"))
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if db.is_file():  # read-only peek: never race the search on creating the schema
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                        q = "SELECT count(*) FROM trials WHERE state = 'COMPLETE'"
                        if con.execute(q).fetchone()[0]:
                            break
                except sqlite3.OperationalError:
                    pass
            if proc.poll() is not None:
                pytest.fail(f"search exited early: {path.with_suffix('.log').read_text()[-500:]}")
            time.sleep(0.2)
        else:
            pytest.fail("no trial completed within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: (t.params, t.values) for t in _complete(_study(path))}
    assert 1 <= len(before) < 3
    run_search(load_study(path), progress=False)
    s = _study(path)
    after = _complete(s)
    assert len(after) == 3  # the budget, not more
    for n, (_params, values) in before.items():  # nothing lost, nothing re-run
        assert s.trials[n].state == TrialState.COMPLETE and s.trials[n].values == values
    assert len({json.dumps(t.params, sort_keys=True) for t in after}) == 3
    for t in s.get_trials(states=(TrialState.FAIL,)):  # the killed one, retried with its params
        assert t.number in s.user_attrs["interrupted"]
        if t.params:  # killed before it sampled anything: nothing to retry
            assert any(r.user_attrs.get("retry_of") == t.number for r in after)


def test_study_db_opens_in_optuna_dashboard(make_study):
    path = make_study("dash", trials=1, static_trials=0)
    cfg = load_study(path)
    run_search(cfg, progress=False)
    assert load_existing(cfg) is not None
    port = free_port()
    # our command, run as README runs it (venv not activated: no optuna-dashboard on PATH)
    exe = Path(sys.executable).parent / "dsnet-automl"
    cmd = [str(exe), "dashboard", str(path), "--host", "127.0.0.1", "--port", str(port)]
    studies = dashboard_studies(cmd, port, timeout_s=90)
    assert "dash" in studies
    assert [d.lower() for d in studies["dash"]["directions"]] == ["maximize", "minimize"]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "dashboard still serving after SIGTERM"


def test_ray_runner_two_workers(make_study):
    path = make_study("ray", trials=2, static_trials=0)
    cfg = load_study(path)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    res = run_search(cfg, workers=2, progress=False)
    done = _complete(res.study)
    assert len(done) == 2
    for t in done:
        assert t.user_attrs["latency_source"] == "predicted" and "ray_trial_id" in t.user_attrs
        assert (Path(t.user_attrs["bundle"]) / "dynamic.yaml").is_file()


def _gate_trial_pid(trials: Path) -> int | None:
    """The process of a Ray search trial whose gate training has checkpointed an epoch."""
    for ckpt in trials.glob("ray_*/gate_train.ckpt"):
        starts = ckpt.parent / "starts.log"
        if starts.is_file() and starts.read_text().strip():
            return int(starts.read_text().split()[0])
    return None


@pytest.mark.fault(
    fault="A Ray search trial dies mid gate training (slow test)",
    injected="SIGKILL of the trial's worker process once a gate checkpoint exists",
    sees="Ray retries the trial (max_failures)",
    kept="the trial resumes from its gate checkpoint; every trial completes",
)
@pytest.mark.slow  # ~30 s on 2 cores; pytest -m slow
def test_ray_search_killed_trial_resumes_its_gate_training(make_study, kill_once):
    """A Ray trial process killed mid gate training is retried (max_failures) and continues
    from its gate checkpoint; the study ends with every trial complete."""
    path = make_study(
        "raykill",
        trials=2,
        static_trials=0,
        max_failures=2,
        search={"gate_epochs": [8, 8], "hidden": [16]},
    )
    cfg = load_study(path)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with kill_once(lambda: _gate_trial_pid(cfg.run_dir / "trials")) as killed:
        res = run_search(cfg, workers=2, progress=False)
    assert killed, "no trial was killed (gate training ended before a checkpoint was seen)"
    trials = _complete(res.study)
    assert len(trials) == 2 and len(res.study.trials) == 2  # no extra, no failed trial
    starts = {t.number: (Path(t.user_attrs["bundle"]) / "starts.log").read_text() for t in trials}
    restarted = [t for t in trials if len(starts[t.number].splitlines()) == 2]
    assert len(restarted) == 1
    (r,) = restarted
    assert r.user_attrs["resumed_from_epoch"] >= 1  # continued, not started over
    history = torch.load(
        Path(r.user_attrs["bundle"]) / "gate_train.ckpt", map_location="cpu", weights_only=True
    )["history"]
    assert [h["epoch"] for h in history] == list(range(1, 9))  # no epoch lost or run twice


def test_search_headroom_line_trial_fronts_and_budget_knob(make_study, tmp_path):
    """The search prints the routing headroom before its trials; a trial records its gate and
    cascade fronts (knobs set on val); `run --budget-ms` sets the knob from the bundle's val
    curve, the same in torch and ONNX Runtime; `headroom` reports oracle, gate and cascade."""
    path = make_study(
        "hr", trials=2, static_trials=0, latency_batch=32, gate_stage="stage3", route_menu_size=4
    )
    r = CliRunner().invoke(app, ["search", str(path), "--no-progress", "--export-formats", "pt2"])
    assert r.exit_code == 0, r.output
    assert "routing headroom on jetson at batch 32" in r.output
    assert "cascade (the route menu's ends" in r.output
    search_out = r.output
    s = load_existing(load_study(path))
    assert s.user_attrs["headroom"]["spread"] > 1.0
    t = _complete(s)[0]
    fronts = t.user_attrs["policy_fronts"]
    assert len(fronts["gate"]) == len(fronts["cascade"]) == 9
    for rows in fronts.values():  # [budget, val top-1, val cost, test top-1, test cost]
        assert all(row[2] <= row[0] * (1 + 1e-9) for row in rows if row[2] >= rows[0][2])
    b = Path(t.user_attrs["bundle"])
    dyn = DynamicNet.load(b)
    assert dyn.gate_stage == "stage3" and dyn.route_space.prefix_cost > 0
    cal = dyn.metadata["calibration"]
    mid = 0.5 * (dyn.route_costs()[0] + dyn.route_costs()[-1])
    preds = {}
    r = CliRunner().invoke(app, ["export-dynamic", str(b), "--formats", "onnx"])
    assert r.exit_code == 0, r.output
    for backend in ("torch", "onnxruntime"):
        csv = tmp_path / f"{backend}.csv"
        args = ["run", str(b), "--backend", backend, "--budget-ms", str(mid), "--out", str(csv)]
        r = CliRunner().invoke(app, [*args, "--data", "synthetic:64", "--split", "val"])
        assert r.exit_code == 0, r.output
        assert "gate knob" in r.output and f"budget {mid:.4g}" in r.output
        preds[backend] = pd.read_csv(csv)
    assert preds["torch"]["route"].tolist() == preds["onnxruntime"]["route"].tolist()
    assert cal["gate"] and cal["cascade"] and cal["chain"] == list(range(dyn.num_routes))
    r = CliRunner().invoke(app, ["run", str(b), "--policy", "cascade", "--budget-ms", str(mid),
                                 "--data", "synthetic:64"])  # fmt: skip
    assert r.exit_code == 0 and "cascade knob" in r.output, r.output
    r = CliRunner().invoke(app, ["run", str(b), "--policy", "best"])
    assert r.exit_code == 1 and "--policy" in r.output
    r = CliRunner().invoke(app, ["headroom", str(b), "--data", "synthetic:64"])
    assert r.exit_code == 0 and "oracle (cheapest correct)" in r.output, r.output
    assert (b / "eval" / "headroom.json").is_file()
    # the per-route-head cascade of the menu's ends: built, stored, exported, runs in both
    casc = s.user_attrs["cascade"]
    assert len(casc["policy_fronts"]["cascade"]) == 9 and "gate" not in casc["policy_fronts"]
    assert f"bundle {load_study(path).run_dir / 'export' / 'cascade'}" in search_out.replace(
        "\n", ""
    )
    cb = load_study(path).run_dir / "export" / "cascade"
    cdyn = DynamicNet.load(cb)
    assert cdyn.route_heads is not None and cdyn.policy == "cascade" and cdyn.num_routes == 2
    # the weights (sliced) and the exported .pt2 programs (ONNX cascades: tests/dynamic/)
    for name, where in (("weights", cb), ("programs", cb / "export")):
        args = ["run", str(where), "--backend", "torch", "--budget-ms", str(mid), "--out"]
        r = CliRunner().invoke(app, [*args, str(tmp_path / f"c_{name}.csv"), "--data",
                                     "synthetic:64", "--split", "val"])  # fmt: skip
        assert r.exit_code == 0 and "cascade knob" in r.output, r.output
    c_t, c_o = (pd.read_csv(tmp_path / f"c_{b}.csv") for b in ("weights", "programs"))
    assert c_t["route"].tolist() == c_o["route"].tolist()
    bad = make_study("bad", trials=1, static_trials=0, gate_stage="stage9")
    r = CliRunner().invoke(app, ["search", str(bad), "--no-progress"])
    assert r.exit_code == 1 and "gate_stage 'stage9'" in r.output, r.output


def test_headroom_warns_on_an_overhead_bound_device_table(make_study):
    """At batch 1 the tiny 32x32 net is launch-bound on the Jetson profile: the menu's routes
    differ < 1.5x in latency and the search's headroom check says so; at batch 32 they do not."""
    from dsnet_automl.dynamic.routing import default_route_space
    from dsnet_automl.search.headroom_check import headroom_lines, menu_headroom
    from dsnet_automl.search.objective import TrialContext

    lines = {}
    for bs in (1, 32):
        cfg = load_study(make_study(f"b{bs}", latency_batch=bs))
        ctx = TrialContext.create(cfg, cfg.checkpoint)
        menu = list(default_route_space(ctx.supernet, 4))
        h = menu_headroom(ctx, menu)
        lines[bs] = headroom_lines(h, cfg.hw, bs)
        assert 0.0 <= h.static_top1 <= h.oracle_top1 <= 1.0
    assert len(lines[1]) == 2 and "overhead-bound on jetson at batch 1" in lines[1][1]
    assert len(lines[32]) == 1
