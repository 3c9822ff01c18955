"""Study YAML validation, routing space and hypervolume (no training)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dsnet_automl import create_supernet
from dsnet_automl.cli import app
from dsnet_automl.errors import StudyError
from dsnet_automl.search import TrialParams, hypervolume, load_study, routing_space


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: x\ntrials: [oops", "not valid YAML"),
        ("name: x\ntrails: 3\n", "field 'trails': unknown field (allowed: name,"),
        ("name: x\nsampler: cmaes\n", "field 'sampler': value 'cmaes'"),
        ("name: x\ntrials: 0\n", "field 'trials': value 0"),
        ("name: x\nsearch: {num_routes: [1, 3]}\n", "num_routes"),
        (
            "name: x\nsearch: {widths: [1, 3]}\n",
            "field 'search.widths': unknown field (allowed: num_routes",
        ),
        (
            "name: x\nhw: toaster\n",
            "field 'hw': unknown hardware profile 'toaster'; known profiles:",
        ),
        ("name: x\nspace: ds_nonsense\n", "field 'space':"),
        ("name: x\nbackend: tensorrt/fp8\n", "field 'backend': backend 'tensorrt/fp8': expected"),
    ],
)
def test_bad_study_one_line_error(tmp_path, text, needle):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(StudyError) as e:
        load_study(p)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and str(p) in msg
    # the CLI prints the same one line and exits 1, no traceback
    res = CliRunner().invoke(app, ["search", str(p)])
    assert res.exit_code == 1
    assert needle.split(":")[0] in res.output and "Traceback" not in res.output


def test_unknown_device_flag_and_missing_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\n")
    res = CliRunner().invoke(app, ["search", str(p), "--hw", "toaster"])
    assert res.exit_code == 1 and "unknown hardware profile 'toaster'" in res.output
    res = CliRunner().invoke(app, ["search", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1 and "not found" in res.output


def test_hw_override_makes_its_own_study_sharing_stage1(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: demo\nhw: jetson\n")
    cfg = load_study(p, hw="host-cpu")
    assert cfg.name == "demo-host-cpu" and cfg.stage1_dir.endswith("demo/stage1")
    assert load_study(p, hw="jetson").name == "demo"


def test_routing_space_spacing_prefix_and_latency_order():
    net = create_supernet("ds_mobilenet_v1_tiny")
    p = TrialParams(4, 0.0, 1.0, 1.0, 1.0, 0.5, 1e-3, 1.0, 1, 16)
    rs = routing_space(net, p, net.macs)
    assert len(rs) == 4 and rs[0] == net.space.config(
        {d: c[0] for d, c in net.space.dims if d.split(".")[0] in ("stage4", "stage5")}
    )
    assert rs[-1] == net.space.largest()
    # dims before the gate stage are shared (largest) by every route
    for cfg in rs:
        for d in ("stem.width", "stage1.width", "stage2.width", "stage3.width"):
            assert cfg[d] == net.space.capacity(d)
    assert list(rs.costs) == sorted(rs.costs)
    # spacing > 1 pulls the middle routes towards the small end
    lo = routing_space(net, TrialParams(4, 0.0, 1.0, 2.0, 1.0, 0.5, 1e-3, 1.0, 1, 16), net.macs)
    assert len(lo) == 4 and lo.costs[1] < rs.costs[1] and lo.costs[2] < rs.costs[2]
    # routes that coincide on the grid are merged
    hi = routing_space(net, TrialParams(4, 0.0, 1.0, 4.0, 1.0, 0.5, 1e-3, 1.0, 1, 16), net.macs)
    assert len(hi) == 3


def test_hypervolume_matches_hand_computed_area():
    ref = (0.0, 10.0)
    assert hypervolume([(0.5, 2.0)], ref) == pytest.approx(0.5 * 8)
    # two steps: 0.5 from 2..6, 0.9 from 6..10; a dominated point adds nothing
    pts = [(0.5, 2.0), (0.9, 6.0), (0.4, 8.0)]
    assert hypervolume(pts, ref) == pytest.approx(0.5 * 4 + 0.9 * 4)
    assert hypervolume([(0.9, 12.0)], ref) == 0.0


def test_dashboard_and_export_without_db_say_run_search_first(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: x\nruns_dir: {tmp_path / 'runs'}\n")
    for cmd in (["dashboard", str(p)], ["export", str(p), "--out", str(tmp_path / "e")]):
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code == 1 and "run 'dsnet-automl search' first" in res.output
    # --runs-dir (as given to `search` on a cluster) points both at that run dir's DB
    other = tmp_path / "shared"
    for cmd in (["dashboard", str(p)], ["export", str(p), "--out", str(tmp_path / "e")]):
        res = CliRunner().invoke(app, [*cmd, "--runs-dir", str(other)])
        assert res.exit_code == 1, res.output
        assert str(other / "x" / "study.db") in res.output.replace("\n", "")


def test_imagefolder_example_study_is_valid():
    cfg = load_study("studies/imagefolder_example.yaml")
    assert cfg.space == "timm:resnet18" and cfg.init == "/path/to/resnet18.pth"
    assert cfg.stage1["img_size"] == 160
    cfg = load_study("studies/imagefolder_example.yaml", init="/elsewhere/w.safetensors")
    assert cfg.init == "/elsewhere/w.safetensors"
    from dsnet_automl.training import TrainConfig

    TrainConfig(space=cfg.space, data=cfg.data, init=cfg.init, **cfg.stage1)  # fields exist


def test_pareto_trials_respects_the_latency_constraint_for_any_sampler():
    import optuna

    from dsnet_automl.search.pareto import LATENCY_EXCESS, pareto_trials

    s = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler()
    )
    for acc, lat, excess in ((0.9, 2.0, 1.0), (0.8, 1.0, 0.0), (0.7, 0.5, -0.5), (0.6, 0.9, -0.1)):
        s.add_trial(
            optuna.trial.create_trial(values=[acc, lat], user_attrs={LATENCY_EXCESS: excess})
        )
    assert [t.values for t in pareto_trials(s)] == [[0.7, 0.5], [0.8, 1.0]]  # 0.9 is too slow


def test_package_uses_only_public_optuna_api():
    from pathlib import Path

    import dsnet_automl

    root = Path(dsnet_automl.__file__).parent
    bad = [
        f"{p.relative_to(root)}:{i}"
        for p in root.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "._storage" in line or "._trial_id" in line
    ]
    assert not bad, bad


def test_study_backend_predicts_with_the_calibrated_constants(make_study):
    """``backend: tensorrt/fp16`` on the Jetson Nano (a calibrated pair in the shipped profile):
    the trial context's table and every latency it gives are ``predicted (calibrated)``, and the
    study cannot later be resumed with another backend (another objective)."""
    from dsnet_automl.latency import LatencyStore
    from dsnet_automl.latency.models import CALIBRATED, PREDICTED
    from dsnet_automl.search.objective import TrialContext
    from dsnet_automl.search.study import open_study

    cfg = load_study(make_study("trt", hw="jetson-nano", backend="tensorrt/fp16"))
    ctx = TrialContext.create(cfg, cfg.checkpoint)
    net = ctx.supernet
    assert ctx.predictor.backend == "tensorrt/fp16"
    fast, src = ctx.latency(net.space.largest())
    assert src == CALIBRATED
    plain = TrialContext.create(load_study(make_study("fp32", hw="jetson-nano")), cfg.checkpoint)
    slow, src32 = plain.latency(net.space.largest())
    assert src32 == PREDICTED and fast != slow  # another table, other constants
    store = LatencyStore(cfg.latency_db)
    assert store.block_table("jetson-nano", 1, "tensorrt/fp16")  # two tables, side by side
    assert store.block_table("jetson-nano", 1, "torch-eager")

    s = open_study(cfg)
    s.enqueue_trial({}, skip_if_exists=False)  # a study with a trial in it
    with pytest.raises(StudyError, match="was run with backend 'tensorrt/fp16', not 'profile"):
        open_study(load_study(make_study("trt", hw="jetson-nano")))
