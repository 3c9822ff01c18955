"""PostgreSQL as storage, against a real server on loopback (tests/_postgres.py; never mocked):
the Optuna study, the latency store and the accuracy table round-trip; 4 writer processes lose
no row; the four connection/schema failures are one line without the password; one ``--storage``
database holds a whole search, which optuna-dashboard then serves."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from dsnet_automl.accuracy.table import AccuracyRow, AccuracyTable
from dsnet_automl.cli import app
from dsnet_automl.config import SubnetConfig
from dsnet_automl.errors import LatencyTableError, StudyError
from dsnet_automl.latency import LatencyStore, Timing
from dsnet_automl.latency.models import CALIBRATED, SCHEMA_VERSION, Base
from dsnet_automl.latency.signature import BlockSignature
from dsnet_automl.search.study import load_existing, open_study, storage_for
from dsnet_automl.search.study_config import StudyConfig
from tests._local import dashboard_studies, free_port
from tests._postgres import PASSWORD, LoopbackPostgres, start_postgres

DEV = ("host-cpu", "cpu")
WRONG_PW = "not-the-password"


@pytest.fixture(scope="module")
def pg() -> LoopbackPostgres:
    """One server for the module (started in ~1 s); skipped without PostgreSQL, except in CI."""
    try:
        server = start_postgres()  # installs Debian's postgresql when run as root
    except RuntimeError as e:
        msg = f"no PostgreSQL server for the storage tests: {e}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg: LoopbackPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database named after the test."""
    return pg.create_database(f"t_{abs(hash(request.node.nodeid)) % 10**10}")


def _sig(i: int) -> BlockSignature:
    return BlockSignature.make(
        "dw_separable", {"k": 3, "stride": 1}, {"in_ch": 8, "out_ch": i}, (8, 4, 4)
    )


def _acc_row(ckpt: str, i: int, top1: float) -> AccuracyRow:
    return AccuracyRow(
        checkpoint_hash=ckpt, data="synthetic:64", data_seed=0, split="val", supernet="net",
        config_key=SubnetConfig.of("net", {"i": i}).to_json(), top1=top1, n_samples=16, seconds=0.0,
    )  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- round trips
def test_optuna_study_round_trip(pg_url: str) -> None:
    cfg = StudyConfig(name="pg-study", storage=pg_url)
    assert cfg.db_url == cfg.latency_db == cfg.accuracy_url == pg_url
    s = open_study(cfg)
    s.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 1, 2)), n_trials=3)
    assert "://" in s.user_attrs["config"]["storage"]
    assert PASSWORD not in json.dumps(s.user_attrs["config"])  # shown by optuna-dashboard
    again = load_existing(cfg)
    assert [t.values for t in again.trials] == [t.values for t in s.trials]
    assert [t.params for t in again.trials] == [t.params for t in s.trials]
    assert isinstance(pickle.loads(pickle.dumps(storage_for(cfg))), optuna.storages.RDBStorage)
    # explicit databases win over storage
    own = StudyConfig(name="x", storage=pg_url, latency_db="sqlite://", accuracy_db="sqlite://")
    assert (own.latency_db, own.accuracy_url, own.db_url) == ("sqlite://", "sqlite://", pg_url)


def test_latency_store_round_trip_and_tables_cli(pg_url: str) -> None:
    store = LatencyStore(pg_url)
    assert store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(5.0), source="predicted")
    assert store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(1.0, 0.9, 1.1, 5))
    assert not store.put_block(DEV, _sig(8), 1, "torch-eager", Timing(9.0), source="predicted")
    assert store.put_network(DEV, "net", '{"w": 1}', 1, "torch-eager", Timing(2.0))
    assert store.block_table("host-cpu", 1, "torch-eager") == {_sig(8): (1.0, "measured")}
    again = pickle.loads(pickle.dumps(store))  # what Ray ships to a worker
    assert again.network_table("host-cpu", "net", 1, "torch-eager") == [
        ('{"w": 1}', 2.0, "measured")
    ]
    assert PASSWORD not in repr(store)
    r = CliRunner().invoke(app, ["tables", "list", "--db", pg_url], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "host-cpu" in r.stdout


def test_latency_version_1_database_is_migrated(pg_url: str) -> None:
    LatencyStore(pg_url).devices()
    v1 = "CHECK (source IN ('measured', 'imported', 'predicted'))"
    for table, name in (
        ("block_measurements", "block_source"),
        ("network_measurements", "network_source"),
    ):
        _execute(pg_url, f"ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {v1}")
    _execute(pg_url, "UPDATE schema_version SET version = 1")
    store = LatencyStore(pg_url)
    assert store.put_block(DEV, _sig(3), 1, "torch-eager", Timing(1.0), source=CALIBRATED)
    with store.session() as s:
        assert s.execute(text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION


def test_accuracy_table_round_trip(pg_url: str) -> None:
    import torch

    from dsnet_automl import create_supernet

    torch.manual_seed(0)
    net = create_supernet("ds_mobilenet_v1_tiny").eval()
    cfgs = [net.space.smallest(), net.space.largest()]
    table = AccuracyTable(pg_url)
    first = table.evaluate(net, cfgs, ckpt_hash="aaaa", data="synthetic:64")
    assert table.last_evaluated == 2 and all(0.0 <= v <= 1.0 for v in first.values())
    other = pickle.loads(pickle.dumps(AccuracyTable(pg_url)))
    assert other.evaluate(net, cfgs, ckpt_hash="aaaa", data="synthetic:64") == first
    assert other.last_evaluated == 0
    df = other.to_frame("aaaa")
    assert len(df) == 2 and set(df["split"]) == {"val"}


# ------------------------------------------------------------------------------- concurrency
def _writer(url: str, worker: int, n: int) -> list[float]:
    """Latency rows (own and shared signatures), network rows, own and shared accuracy rows;
    -> the top-1 the table kept for each shared accuracy key."""
    store, table = LatencyStore(url), AccuracyTable(url)
    kept = []
    for i in range(n):
        store.put_block(DEV, _sig(1000 * (worker + 1) + i), 1, "torch-eager", Timing(1.0 + i))
        store.put_block(DEV, _sig(i), 1, "torch-eager", Timing(1.0 + worker))  # insert race
        store.put_network(DEV, "net", json.dumps({"w": worker, "i": i}), 1, "eager", Timing(1.0))
        table._put(_acc_row(f"w{worker}", i, 0.5))  # the write path of evaluate()
        kept.append(table._put(_acc_row("shared", i, worker / 10)))
        store.block_table("host-cpu", 1, "torch-eager")  # readers interleave with writers
    return kept


def test_four_writer_processes_lose_no_rows(pg_url: str) -> None:
    n = 25
    # on an empty database: the four also race on creating the schema. fork, not spawn: four
    # spawned interpreters re-import torch (~10 s on 2 cores); each child still opens its own
    # connections (the stores are created in _writer) and leaves through os._exit
    with mp.get_context("fork").Pool(4) as pool:
        kept = pool.starmap(_writer, [(pg_url, w, n) for w in range(4)])
    store, table = LatencyStore(pg_url), AccuracyTable(pg_url)
    blocks = store.block_table("host-cpu", 1, "torch-eager")
    assert set(blocks) == {_sig(1000 * (w + 1) + i) for w in range(4) for i in range(n)} | {
        _sig(i) for i in range(n)
    }
    assert len(store.network_table("host-cpu", "net", 1, "eager")) == 4 * n
    assert store.devices() == ["host-cpu"]
    df = table.to_frame()
    assert len(df) == 4 * n + n
    shared = df[df["checkpoint_hash"] == "shared"].sort_values("config")
    assert all(k == kept[0] for k in kept)  # every writer got the row that was kept
    by_i = {
        SubnetConfig.from_json(c)["i"]: v
        for c, v in zip(shared["config"], shared["top1"], strict=True)
    }
    assert [by_i[i] for i in range(n)] == kept[0]


# ------------------------------------------------------------------------------- errors
def _open_latency(url: str) -> None:
    LatencyStore(url).devices()


def _open_accuracy(url: str) -> None:
    AccuracyTable(url).to_frame()


def _open_study(url: str) -> None:
    storage_for(StudyConfig(name="s"), url)


OPENERS = {
    "latency": (_open_latency, LatencyTableError),
    "accuracy": (_open_accuracy, StudyError),
    "study": (_open_study, StudyError),
}


def _assert_one_line(msg: str, url: str, *needles: str) -> None:
    assert "\n" not in msg, msg
    assert PASSWORD not in msg and WRONG_PW not in msg, msg
    assert make_url(url).render_as_string(hide_password=True) in msg, msg
    for needle in needles:
        assert needle in msg, msg


@pytest.mark.parametrize("store", OPENERS)
@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("refused", ("Connection refused", "start the database server at 127.0.0.1:")),
        ("password", ("password authentication failed", "fix the user name or password")),
        ("missing", ('database "no_such_db" does not exist', "CREATE DATABASE no_such_db")),
    ],
)
def test_connection_failures_are_one_line(
    pg: LoopbackPostgres, store: str, case: str, needles: tuple[str, ...]
) -> None:
    url = {
        "refused": pg.url("postgres", port=free_port()),
        "password": pg.url("postgres", password=WRONG_PW),
        "missing": pg.url("no_such_db"),
    }[case]
    opener, error = OPENERS[store]
    with pytest.raises(error) as e:
        opener(url)
    _assert_one_line(str(e.value), url, "cannot connect", *needles)


@pytest.mark.parametrize(
    ("store", "sql", "needles"),
    [
        ("latency", f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}",
         ("newer than", "upgrade dsnet-automl")),
        ("accuracy", "UPDATE accuracy_schema_version SET version = 99",
         ("newer than", "upgrade dsnet-automl")),
        ("study", "UPDATE alembic_version SET version_num = 'v99.0.0.a'",
         ("updating optuna", "left untouched")),
    ],
)  # fmt: skip
def test_newer_schema_is_one_line(
    pg_url: str, store: str, sql: str, needles: tuple[str, ...]
) -> None:
    opener, error = OPENERS[store]
    opener(pg_url)  # creates the schema
    _execute(pg_url, sql)
    with pytest.raises(error) as e:
        opener(pg_url)
    _assert_one_line(str(e.value), pg_url, "schema", *needles)


def test_cli_error_is_one_line(pg: LoopbackPostgres) -> None:
    url = pg.url("postgres", password=WRONG_PW)
    r = CliRunner().invoke(app, ["tables", "list", "--db", url], env={"COLUMNS": "80"})
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: latency database"), r.stderr
    _assert_one_line(lines[0], url, "fix the user name or password")


# ------------------------------------------------------------------------------- --storage
def test_search_storage_holds_everything_and_dashboard_reads_it(
    pg_url: str, stage1_ckpt: Path, tmp_path: Path
) -> None:
    study = tmp_path / "pg.yaml"
    study.write_text(
        yaml.safe_dump(
            {"name": "pg", "data": "synthetic:64", "hw": "jetson", "checkpoint": str(stage1_ckpt),
             "trials": 1, "static_trials": 0, "population": 2, "runs_dir": str(tmp_path / "runs"),
             "gate_batch_size": 32, "accuracy_samples": 24, "route_menu_size": 6,
             "search": {"gate_epochs": [1, 1], "hidden": [16]}}
        )
    )  # fmt: skip
    r = CliRunner().invoke(
        app,
        ["search", str(study), "--storage", pg_url, "--no-progress", "--export-formats", "pt2"],
        env={"COLUMNS": "250"},
    )
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.stdout
    tables = _tables(pg_url)
    assert set(Base.metadata.tables) | {"subnet_accuracy", "studies", "trials"} <= tables
    assert not list((tmp_path / "runs").rglob("*.db"))  # no SQLite file was written
    assert LatencyStore(pg_url).devices()  # the search's predicted latency rows
    assert len(AccuracyTable(pg_url).to_frame()) >= 24
    assert len(optuna.load_study(study_name="pg", storage=pg_url).trials) == 1

    port = free_port()
    exe = str(Path(sys.executable).parent / "dsnet-automl")
    cmd = [exe, "dashboard", str(study), "--db", pg_url, "--host", "127.0.0.1", "--port", str(port)]
    studies = dashboard_studies(cmd, port, timeout_s=60)
    assert [d.lower() for d in studies["pg"]["directions"]] == ["maximize", "minimize"]
