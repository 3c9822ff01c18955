"""Latency store: schema round-trip, concurrent writers, corrupt/newer databases."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import pickle
import sqlite3
from pathlib import Path

import pytest

from dsnet_automl.errors import LatencyTableError
from dsnet_automl.latency import SCHEMA_VERSION, BlockSignature, LatencyStore, Timing, replaces

DEV = ("host-cpu", "cpu")


def _sig(i: int) -> BlockSignature:
    return BlockSignature.make(
        "dw_separable", {"k": 3, "stride": 1}, {"in_ch": 8, "out_ch": i}, (8, 4, 4)
    )


def _url(p: Path) -> str:
    return f"sqlite:///{p}"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_schema_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "lat.db"
    store = LatencyStore(_url(db))
    t = Timing(1.25, 1.0, 1.5, 20, threads=2, versions={"torch": "x"})
    assert store.put_block(DEV, _sig(16), 1, "torch-eager", t, macs=123)
    assert store.put_block(DEV, _sig(32), 8, "torch-eager", Timing(2.0), source="predicted")
    assert store.put_network(DEV, "net", '{"a": 1}', 1, "torch-eager", Timing(3.0, 2.9, 3.1, 5))
    store.close()
    again = pickle.loads(pickle.dumps(LatencyStore(_url(db))))  # engine dropped, re-created
    assert again.block_table("host-cpu", 1, "torch-eager") == {_sig(16): (1.25, "measured")}
    assert again.block_table("host-cpu", 8, "torch-eager") == {_sig(32): (2.0, "predicted")}
    assert again.block_table("host-cpu", 1, "onnxruntime") == {}
    assert again.network_table("host-cpu", "net", 1, "torch-eager") == [
        ('{"a": 1}', 3.0, "measured")
    ]
    with sqlite3.connect(db) as con:
        assert con.execute("select version from schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert con.execute("pragma journal_mode").fetchone() == ("wal",)
        row = con.execute(
            "select p10_ms, p90_ms, repeats, threads, versions from block_measurements"
            " where batch_size = 1"
        ).fetchone()
    assert row == (1.0, 1.5, 20, 2, '{"torch": "x"}')


def test_evidence_beats_prediction(tmp_path: Path) -> None:
    store = LatencyStore(_url(tmp_path / "lat.db"))
    assert store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(5.0), source="predicted")
    assert store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(1.0), source="measured")
    assert not store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(9.0), source="predicted")
    assert store.block_table("host-cpu", 1, "torch-eager") == {_sig(8): (1.0, "measured")}
    assert replaces("imported", "measured") and not replaces("predicted", "imported")


def _writer(url: str, worker: int, n: int) -> int:
    store = LatencyStore(url, timeout_s=30)
    for i in range(n):
        store.put_block(DEV, _sig(1000 * worker + i), 1, "torch-eager", Timing(float(i + 1)))
        store.put_network(DEV, "net", f'{{"w": {worker}, "i": {i}}}', 1, "torch-eager", Timing(1.0))
        store.block_table("host-cpu", 1, "torch-eager")  # readers interleave with writers
    return n


def test_four_processes_write_concurrently_without_loss(tmp_path: Path) -> None:
    url, n = _url(tmp_path / "lat.db"), 20
    LatencyStore(url).devices()  # create the schema once
    with mp.get_context("spawn").Pool(4) as pool:
        done = pool.starmap(_writer, [(url, w, n) for w in range(4)])
    assert done == [n] * 4  # no worker raised (a lock error would propagate here)
    store = LatencyStore(url)
    table = store.block_table("host-cpu", 1, "torch-eager")
    assert set(table) == {_sig(1000 * w + i) for w in range(4) for i in range(n)}
    assert len(store.network_table("host-cpu", "net", 1, "torch-eager")) == 4 * n


def test_corrupt_file_is_reported_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "lat.db"
    db.write_bytes(b"this is not a database\n" * 100)
    before = _sha(db)
    with pytest.raises(LatencyTableError, match="not a SQLite database.*left untouched"):
        LatencyStore(_url(db)).devices()
    assert _sha(db) == before


def test_truncated_sqlite_file_is_reported_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "lat.db"
    store = LatencyStore(_url(db))
    store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(1.0))
    store.close()
    db.write_bytes(db.read_bytes()[:100] + b"\xff" * 3000)  # valid header, garbage pages
    for p in tmp_path.glob("lat.db-*"):
        p.unlink()
    before = _sha(db)
    with pytest.raises(LatencyTableError, match="corrupt|not a dsnet-automl"):
        LatencyStore(_url(db)).devices()
    assert _sha(db) == before


def test_newer_schema_is_reported_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "lat.db"
    LatencyStore(_url(db)).devices()
    with sqlite3.connect(db) as con:
        con.execute("update schema_version set version = ?", (SCHEMA_VERSION + 1,))
    before = _sha(db)
    with pytest.raises(
        LatencyTableError, match=rf"schema version {SCHEMA_VERSION + 1}.*newer.*upgrade"
    ):
        LatencyStore(_url(db)).devices()
    assert _sha(db) == before


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("create table users (id integer)")
    before = _sha(db)
    with pytest.raises(LatencyTableError, match="not a dsnet-automl latency database"):
        LatencyStore(_url(db)).devices()
    assert _sha(db) == before


def test_in_memory_url_works() -> None:
    store = LatencyStore("sqlite://")
    store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(1.0))
    assert store.devices() == ["host-cpu"]
