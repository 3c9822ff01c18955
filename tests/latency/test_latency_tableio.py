"""CSV/Parquet export and import: sources preserved, malformed files import nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dsnet_automl.errors import LatencyTableError
from dsnet_automl.latency import (
    BlockSignature,
    LatencyStore,
    Timing,
    export_table,
    import_table,
    table_frame,
)

JETSON = ("jetson-orin-nano", "gpu")


def _sig(i: int) -> BlockSignature:
    return BlockSignature.make(
        "vit_block", {"E": 64, "head_dim": 16}, {"embed": i, "heads": 2, "hidden": 2 * i}, (65, 64)
    )


def _filled(tmp_path: Path, name: str = "src.db") -> LatencyStore:
    store = LatencyStore(f"sqlite:///{tmp_path / name}")
    store.put_block(
        JETSON, _sig(32), 1, "torch-eager", Timing(1.5, 1.4, 1.7, 30, 6, {"torch": "2"})
    )
    store.put_block(JETSON, _sig(48), 1, "torch-eager", Timing(0.9), source="predicted", macs=7)
    store.put_network(JETSON, "ds_deit_small_tiny", '{"x": 1}', 1, "torch-eager", Timing(4.0))
    return store


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_import_preserves_predicted_vs_measured(tmp_path: Path, fmt: str) -> None:
    src = _filled(tmp_path)
    out = tmp_path / f"jetson.{fmt}"
    assert export_table(src, "jetson-orin-nano", out, fmt) == 3
    dst = LatencyStore(f"sqlite:///{tmp_path / 'dst.db'}")
    assert import_table(dst, out) == {"written": 3, "skipped": 0}
    table = dst.block_table("jetson-orin-nano", 1, "torch-eager")
    # measured elsewhere -> "imported" (still evidence); predicted stays predicted
    assert table == {_sig(32): (1.5, "imported"), _sig(48): (0.9, "predicted")}
    assert dst.network_table("jetson-orin-nano", "ds_deit_small_tiny", 1, "torch-eager") == [
        ('{"x": 1}', 4.0, "imported")
    ]
    a, b = table_frame(src), table_frame(dst)
    cols = [
        "record",
        "kind",
        "hparams",
        "active",
        "in_shape",
        "median_ms",
        "p10_ms",
        "p90_ms",
        "repeats",
    ]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert list(b["source"]) == ["imported", "predicted", "imported"]
    # a second round trip keeps the labels as they are
    out2 = tmp_path / f"again.{fmt}"
    export_table(dst, "jetson-orin-nano", out2, fmt)
    third = LatencyStore(f"sqlite:///{tmp_path / 'third.db'}")
    import_table(third, out2)
    assert list(table_frame(third)["source"]) == ["imported", "predicted", "imported"]


def test_imported_rows_replace_predicted_but_not_the_reverse(tmp_path: Path) -> None:
    here = LatencyStore(f"sqlite:///{tmp_path / 'here.db'}")
    here.put_block(JETSON, _sig(32), 1, "torch-eager", Timing(99.0), source="predicted")
    here.put_block(JETSON, _sig(48), 1, "torch-eager", Timing(2.0), source="measured")
    out = tmp_path / "t.csv"
    export_table(_filled(tmp_path), "jetson-orin-nano", out)
    assert import_table(here, out) == {"written": 2, "skipped": 1}
    assert here.block_table("jetson-orin-nano", 1, "torch-eager") == {
        _sig(32): (1.5, "imported"),  # measured on the device replaced the roofline guess
        _sig(48): (2.0, "measured"),  # a prediction never overwrites a measurement
    }


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("median_ms", "fast", "column 'median_ms'"),
        ("source", "guessed", "column 'source'"),
        ("batch_size", "0", "column 'batch_size'"),
        ("active", "{not json", "active"),
        ("in_shape", "65by64", "in_shape"),
    ],
)
def test_malformed_csv_names_row_and_column_and_imports_nothing(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    out = tmp_path / "t.csv"
    export_table(_filled(tmp_path), "jetson-orin-nano", out)
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    df.loc[1, column] = value  # second data row = line 3 of the file
    df.to_csv(out, index=False)
    dst = LatencyStore(f"sqlite:///{tmp_path / 'dst.db'}")
    with pytest.raises(LatencyTableError, match=r"row 2 \(line 3\)") as e:
        import_table(dst, out)
    assert message in str(e.value) and "nothing was imported" in str(e.value)
    assert table_frame(dst).empty  # the valid first row was not imported either


def test_missing_columns_and_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("device,median_ms\nx,1\n")
    store = LatencyStore("sqlite://")
    with pytest.raises(LatencyTableError, match="missing column"):
        import_table(store, bad)
    with pytest.raises(LatencyTableError, match="does not exist"):
        import_table(store, tmp_path / "nope.csv")
    with pytest.raises(LatencyTableError, match="no latency rows for device 'jetson-nano'"):
        export_table(store, "jetson-nano", tmp_path / "x.csv")
