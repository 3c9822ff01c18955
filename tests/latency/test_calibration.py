"""Calibration of device profiles on published reference latencies (issue 18, item 3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.errors import LatencyTableError
from dsnet_automl.factory import create_supernet, load_space
from dsnet_automl.latency import (
    CALIBRATED,
    NETWORKS,
    LatencyPredictor,
    LatencyStore,
    NetCache,
    RooflineConstants,
    Timing,
    calibrate,
    combined_source,
    load_profile,
    load_reference,
    network_roofline_ms,
    predict_table,
    to_calibrated,
)
from dsnet_automl.latency.calibration import FigureSet, fit_constants
from dsnet_automl.latency.models import MEASURED, PREDICTED, SCHEMA_VERSION
from dsnet_automl.latency.profiles import override_path
from dsnet_automl.latency.reference import ReferenceFile
from dsnet_automl.latency.signature import BlockSignature
from dsnet_automl.search.objective import TrialContext

REPO = Path(__file__).resolve().parents[2]
# small inputs keep every build and cost table fast; batch and input vary so the two constants
# are identifiable (overhead dominates small figures, efficiency large ones)
GEOMETRY = [("resnet18", 64, 1), ("resnet18", 96, 8), ("resnet34", 64, 4),
            ("mobilenetv2_100", 64, 1), ("mobilenetv2_100", 96, 16), ("efficientnet_b0", 64, 2),
            ("deit_tiny_patch16_224", 64, 1), ("deit_tiny_patch16_224", 64, 8)]  # fmt: skip
TRUE = RooflineConstants(efficiency=0.37, layer_overhead_s=55e-6)
SRC = {"url": "https://example.org/bench", "where": "table 1"}
runner = CliRunner()


@pytest.fixture(scope="module")
def cache() -> NetCache:
    return NetCache()


def _entries(cache: NetCache, profile, truth: RooflineConstants, precision: str = "fp16"):
    out = []
    for net, size, bs in GEOMETRY:
        ms = network_roofline_ms(
            cache.net(net, size), None, profile, bs, precision, truth, input_size=(3, size, size)
        )
        out.append({"network": net, "backend": "tensorrt", "precision": precision,
                    "batch_size": bs, "input_size": size, "latency_ms": round(ms, 9),
                    "source": SRC})  # fmt: skip
    return out


def _ref(device: str, entries: list[dict]) -> ReferenceFile:
    return ReferenceFile.model_validate({"device": device, "entries": entries})


def test_calibration_recovers_known_constants(cache: NetCache) -> None:
    prof = load_profile("jetson-orin-nano")
    results, refused = calibrate(prof, _ref(prof.name, _entries(cache, prof, TRUE)), cache)
    (r,) = results
    assert not refused and r.pair == "tensorrt/fp16" and r.n == len(GEOMETRY)
    assert r.constants.efficiency == pytest.approx(0.37, rel=1e-3)
    assert r.constants.layer_overhead_s == pytest.approx(55e-6, rel=1e-3)
    assert r.constants.memory_efficiency is None  # the data does not ask for a memory term
    assert r.summary["loo_median_ape"] < 0.1 and r.summary["loo_tau"] == pytest.approx(1.0)
    assert r.summary["before_median_ape"] > 10  # the assumed constants were off


def test_memory_term_is_recovered_when_asked_for(cache: NetCache) -> None:
    prof = load_profile("jetson-orin-nano")
    # slow compute, fast memory: compute binds the convs, memory the low-intensity blocks
    truth = RooflineConstants(0.05, 20e-6, memory_efficiency=0.3)
    ref = _ref(prof.name, _entries(cache, prof, truth))
    figs = FigureSet(prof, "fp16", ref.entries, tuple(cache.costs(e) for e in ref.entries))
    c = fit_constants(figs, memory_term=True)
    assert c.memory_efficiency == pytest.approx(0.3, rel=1e-3)
    assert c.efficiency == pytest.approx(0.05, rel=1e-3)
    (r,) = calibrate(prof, ref, cache)[0]  # chosen: it cuts the held-out error
    assert r.constants.memory_efficiency == pytest.approx(0.3, rel=1e-3)


def test_thin_pair_is_refused_with_one_line(cache: NetCache) -> None:
    prof = load_profile("jetson-orin-nano")
    entries = _entries(cache, prof, TRUE)
    thin = [dict(e, backend="onnxruntime") for e in entries[:2]]
    results, refused = calibrate(prof, _ref(prof.name, entries + thin), cache)
    assert [r.pair for r in results] == ["tensorrt/fp16"]
    assert refused == [
        "jetson-orin-nano onnxruntime/fp16: 2 published figure(s), need at least 3 to fit and "
        "check 2 constants; not calibrated"
    ]


def _write_ref(path: Path, entries: list[dict], device: str = "jetson-orin-nano") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"device": device, "entries": entries}, sort_keys=False))
    return path


ENTRY = {"network": "resnet18", "backend": "tensorrt", "precision": "fp16", "batch_size": 1,
         "input_size": 224, "latency_ms": 2.0, "source": SRC}  # fmt: skip


def test_entry_without_source_is_refused(tmp_path: Path) -> None:
    bad = {k: v for k, v in ENTRY.items() if k != "source"}
    path = _write_ref(tmp_path / "ref.yaml", [ENTRY, ENTRY, ENTRY, bad])
    with pytest.raises(LatencyTableError) as e:
        load_reference(path)
    assert str(e.value) == (
        f"{path}: entries[3].source: entry (resnet18, tensorrt fp16) has no source; a figure "
        "without a source (url and where) is refused"
    )


def test_unbuildable_network_is_refused(tmp_path: Path) -> None:
    path = _write_ref(tmp_path / "ref.yaml", [ENTRY, dict(ENTRY, network="yolov5s")])
    with pytest.raises(LatencyTableError) as e:
        load_reference(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: entries[1].network: 'yolov5s' cannot be built; allowed: ")
    assert "resnet18, resnet34" in msg and "\n" not in msg


def test_reference_file_rules(tmp_path: Path) -> None:
    both = dict(ENTRY, throughput_ips=500.0)
    with pytest.raises(LatencyTableError, match=r"entries\[0\]: .*exactly one of latency_ms"):
        load_reference(_write_ref(tmp_path / "a.yaml", [both]))
    with pytest.raises(LatencyTableError, match="unknown hardware profile 'nope'"):
        load_reference(_write_ref(tmp_path / "b.yaml", [ENTRY], device="nope"))
    tput = dict(ENTRY, latency_ms=None, throughput_ips=500.0, batch_size=8)
    ref = load_reference(_write_ref(tmp_path / "c.yaml", [tput]))
    assert ref.entries[0].batch_latency_ms == pytest.approx(16.0)  # 8 images at 500/s


def test_shipped_reference_files_load() -> None:
    files = sorted((REPO / "hw_profiles" / "reference").glob("*.yaml"))
    for f in files:
        ref = load_reference(f)
        assert ref.device == f.stem and all(e.network in NETWORKS for e in ref.entries)


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_calibrated_label_reaches_list_export_and_search(
    tmp_path: Path, monkeypatch, cache: NetCache
) -> None:
    """calibrate -> profile YAML -> tables predict -> list / export / import -> predictor and
    the search's trial context all say ``predicted (calibrated)``."""
    prof = load_profile("jetson-orin-nano")
    (tmp_path / "hw_profiles").mkdir()
    shipped = (REPO / "hw_profiles" / "jetson-orin-nano.yaml").read_text()
    original = shipped.split("\ncalibrated:")[0] + "\n"  # as if never calibrated
    yml = tmp_path / "hw_profiles" / "jetson-orin-nano.yaml"
    yml.write_text(original)
    _write_ref(tmp_path / "hw_profiles" / "reference" / "jetson-orin-nano.yaml",
               _entries(cache, prof, TRUE))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSNET_HW_PROFILES", raising=False)
    # by default the fitted constants go to the user's override, the profile file stays as is
    out = _ok("tables", "calibrate", "jetson", "--backend", "tensorrt", "--precision", "fp16")
    assert "held-out (leave-one-network-out) median 0.0%" in out and "your override" in out
    assert yml.read_text() == original
    assert load_profile("jetson").calibrated["tensorrt/fp16"].efficiency == pytest.approx(
        0.37, rel=1e-3
    )
    override_path("jetson-orin-nano").unlink()
    assert "tensorrt/fp16" not in load_profile("jetson").calibrated  # back to the file's
    # --into writes into a profile YAML (how a maintainer updates a shipped profile)
    out = _ok("tables", "calibrate", "jetson", "--backend", "tensorrt", "--precision", "fp16",
              "--into", str(yml))  # fmt: skip
    assert f"wrote calibrated tensorrt/fp16 into {yml}" in out
    text = yml.read_text()
    assert text.startswith(original.rstrip("\n"))  # comments and fields kept as they were
    cal = load_profile("jetson").calibrated["tensorrt/fp16"]
    assert cal.efficiency == pytest.approx(0.37, rel=1e-3) and cal.n == len(GEOMETRY)
    assert cal.source.startswith("calibrated on 8 published measurements (tensorrt, fp16; ")
    _ok("tables", "calibrate", "jetson", "--backend", "tensorrt", "--into", str(yml))  # replaces
    assert yml.read_text().count("calibrated:") == 1

    db = f"sqlite:///{tmp_path / 'lat.db'}"
    sp = ["--space", "ds_deit_small_tiny", "--batch-size", "1", "--db", db]
    assert CALIBRATED in _ok("tables", "predict", "jetson", "--backend", "tensorrt",
                             "--precision", "fp16", *sp)  # fmt: skip
    assert "38 predicted block rows" in _ok("tables", "predict", "jetson", *sp)  # fp32: assumed
    out = _ok("tables", "list", "--db", db)
    assert "tensorrt/fp16" in out and "predicted (calibrated) 38" in out and "predicted 38" in out
    csv = tmp_path / "jetson.csv"
    _ok("tables", "export", "jetson", "--out", str(csv), "--db", db)
    assert (CALIBRATED in csv.read_text()) and "predicted (calibrated)" in _ok(
        "tables", "show", "jetson", "--limit", "0", "--db", db
    )
    other = f"sqlite:///{tmp_path / 'other.db'}"
    _ok("tables", "import", str(csv), "--db", other)
    assert "predicted (calibrated) 38" in _ok("tables", "list", "--db", other)

    sp_ = load_space("ds_deit_small_tiny")
    net = create_supernet(sp_.supernet, space=sp_)
    store = LatencyStore(db)
    calibrated = LatencyPredictor(store, load_profile("jetson"), net, backend="tensorrt/fp16")
    assert calibrated.estimate(sp_.largest()).source == CALIBRATED
    assert LatencyPredictor(store, "jetson", net).estimate(sp_.largest()).source == PREDICTED
    ctx = TrialContext(study=None, supernet=net, predictor=calibrated, data="")
    assert ctx.latency(sp_.smallest())[1] == CALIBRATED  # what trials record as latency_source


def test_combined_source() -> None:
    assert combined_source([MEASURED, "imported"]) == MEASURED
    assert combined_source([MEASURED, CALIBRATED]) == CALIBRATED
    assert combined_source([CALIBRATED, PREDICTED]) == PREDICTED
    assert combined_source([]) == PREDICTED


def _v1_database(tmp_path: Path) -> Path:
    """A version-1 database: today's DDL with the old CHECK (no calibrated label), rows in it."""
    v2 = tmp_path / "v2.db"
    LatencyStore(f"sqlite:///{v2}").devices()
    ddl = [
        r[0] for r in sqlite3.connect(v2).execute("SELECT sql FROM sqlite_master WHERE sql != ''")
    ]
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    for stmt in ddl:
        con.execute(stmt.replace(", 'predicted (calibrated)'", ""))
    con.execute("INSERT INTO schema_version (id, version) VALUES (1, 1)")
    con.execute(
        "INSERT INTO devices (id, name, kind, description, created_at) "
        "VALUES (1, 'jetson-nano', 'gpu', '', '2026-01-01 00:00:00')"
    )
    con.execute("INSERT INTO block_signatures (id, kind, hparams, active, in_shape) "
                "VALUES (1, 'conv', '{}', '{}', '3x8x8')")  # fmt: skip
    con.execute(
        "INSERT INTO block_measurements (device_id, signature_id, batch_size, backend, median_ms, "
        "repeats, versions, source, measured_at) "
        "VALUES (1, 1, 1, 'torch-eager', 1.5, 3, '{}', 'measured', '2026-01-01 00:00:00')"
    )
    con.commit()
    with pytest.raises(sqlite3.IntegrityError):  # the old CHECK refuses the new label
        con.execute("UPDATE block_measurements SET source = 'predicted (calibrated)' WHERE id = 1")
    con.close()
    return path


def test_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = _v1_database(tmp_path)
    store = LatencyStore(f"sqlite:///{path}")
    sig = BlockSignature("conv", "{}", "{}", "3x8x8")
    assert store.block_table("jetson-nano", 1, "torch-eager") == {sig: (1.5, MEASURED)}
    dev = ("jetson-nano", "gpu")
    other = BlockSignature("conv", "{}", "{}", "3x4x4")
    assert store.put_block(dev, other, 1, "torch-eager", Timing(0.7), source=CALIBRATED)
    assert not store.put_block(dev, sig, 1, "torch-eager", Timing(9.9), source=CALIBRATED)
    store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert not any(t.startswith("_v1_") for t in tables)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert LatencyStore(f"sqlite:///{path}").block_table("jetson-nano", 1, "torch-eager") == {
        sig: (1.5, MEASURED),
        other: (0.7, CALIBRATED),
    }


def test_predict_table_uses_backend_precision_constants(cache: NetCache) -> None:
    prof = load_profile("jetson-orin-nano")
    (r,) = calibrate(prof, _ref(prof.name, _entries(cache, prof, TRUE)), cache)[0]
    cal = prof.model_copy(update={"calibrated": {"tensorrt/fp16": to_calibrated(r)}})
    sp = load_space("ds_mobilenet_v1_tiny")
    net = create_supernet(sp.supernet, space=sp)
    store = LatencyStore("sqlite://")
    n = predict_table(store, cal, net, sp, batch_sizes=[1], backend="tensorrt", precision="fp16")
    predict_table(store, cal, net, sp, batch_sizes=[1])
    trt = store.block_table(prof.name, 1, "tensorrt/fp16")
    eager = store.block_table(prof.name, 1, "torch-eager")
    assert len(trt) == len(eager) == n and {s for _, s in trt.values()} == {CALIBRATED}
    assert {s for _, s in eager.values()} == {PREDICTED}
    assert sum(ms for ms, _ in trt.values()) != pytest.approx(sum(ms for ms, _ in eager.values()))


def test_degenerate_fit_is_flagged(cache: NetCache) -> None:
    """Figures that are all overhead cannot pin the efficiency: flagged, not trusted."""
    prof = load_profile("jetson-orin-nano")
    truth = RooflineConstants(efficiency=1e4, layer_overhead_s=100e-6)
    (r,) = calibrate(prof, _ref(prof.name, _entries(cache, prof, truth)), cache)[0]
    assert r.at_bound == ["efficiency 50"]


def test_figures_of_another_setting_are_left_out() -> None:
    """One set of constants cannot fit two settings: figures run on another unit, or (when a
    pair mixes thread counts) at threads other than the profile's, are left out with a line."""
    from dsnet_automl.latency.calibration import select_setting
    from dsnet_automl.latency.reference import ReferenceEntry

    prof = load_profile("raspberry-pi-5")  # a cpu profile, threads 4

    def e(net: str, threads: int | None, unit: str | None) -> ReferenceEntry:
        return ReferenceEntry(network=net, backend="ncnn", precision="fp16", batch_size=1,
                              input_size=224, latency_ms=5.0, threads=threads, runs_on=unit,
                              source=SRC)  # fmt: skip

    group = [e("resnet18", 4, "cpu"), e("resnet18", 1, "cpu"), e("resnet50", 4, None),
             e("resnet50", None, "gpu"), e("mobilenetv2_100", None, None)]  # fmt: skip
    kept, lines = select_setting(group, prof)
    assert [(k.network, k.threads) for k in kept] == [
        ("resnet18", 4),
        ("resnet50", 4),
        ("mobilenetv2_100", None),
    ]
    assert lines == [
        "1 figure(s) measured on the gpu left out (the profile is a cpu)",
        "1 figure(s) at other thread counts left out (kept threads=4)",
    ]
    same = [e("resnet18", 1, "cpu"), e("resnet50", 1, "cpu")]  # one count: nothing to choose
    assert select_setting(same, prof) == (same, [])
