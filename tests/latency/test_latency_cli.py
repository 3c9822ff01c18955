"""``dsnet-automl profile`` and ``dsnet-automl tables`` through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dsnet_automl.cli import app

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_profile_show_export_import(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lat.db'}"
    # fmt: off
    out = _ok("profile", "--hw", "cpu", "--space", "ds_deit_small_tiny", "--batch-size", "1",
              "--repeats", "3", "--warmup", "1", "--validate", "3", "--threads", "1", "--db", db)
    # fmt: on
    assert "38 block signatures, 38 measured" in out
    out = _ok("tables", "list", "--db", db)
    assert "host-cpu" in out and "measured 38" in out and "jetson-orin-nano" in out
    out = _ok("tables", "show", "host-cpu", "--space", "ds_deit_small_tiny", "--db", db)
    assert "fitted on 3 end-to-end" in out and "largest" in out
    _ok(
        "tables",
        "predict",
        "jetson",
        "--space",
        "ds_deit_small_tiny",
        "--batch-size",
        "1",
        "--db",
        db,
    )
    out = _ok("tables", "show", "jetson", "--space", "ds_deit_small_tiny", "--db", db)
    assert "predicted" in out and "measured" not in out
    csv = tmp_path / "jetson.csv"
    _ok("tables", "export", "jetson", "--format", "csv", "--out", str(csv), "--db", db)
    pq = tmp_path / "host.parquet"
    _ok("tables", "export", "host-cpu", "--format", "parquet", "--out", str(pq), "--db", db)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert "38 rows written" in _ok("tables", "import", str(csv), "--db", other)
    assert "41 rows written" in _ok("tables", "import", str(pq), "--db", other)
    out = _ok("tables", "list", "--db", other)
    assert "imported 38" in out and "predicted 38" in out


def test_errors_are_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lat.db'}"
    r = runner.invoke(
        app, ["profile", "--hw", "nope", "--space", "ds_mobilenet_v1_tiny", "--db", db]
    )
    assert r.exit_code == 1 and "known profiles" in r.output and "jetson-orin-nano" in r.output
    assert "Traceback" not in r.output
    bad = tmp_path / "bad.db"
    bad.write_text("garbage")
    r = runner.invoke(app, ["tables", "list", "--db", f"sqlite:///{bad}"])
    assert r.exit_code == 1 and "not a SQLite database" in r.output
    r = runner.invoke(
        app, ["tables", "export", "jetson", "--format", "xlsx", "--out", "x", "--db", db]
    )
    assert r.exit_code == 1 and "csv, parquet" in r.output
