"""A full disk and read-only places: one clear line, nothing lost (issue 33).

Faults are injected for real: ENOSPC by making the checkpoint write fail half-way (the bytes
that fit are written, then ``OSError(ENOSPC)``, as ``write(2)`` does on a full disk); a full
SQLite database by capping it with ``PRAGMA max_page_count`` (SQLite's own ``SQLITE_FULL``);
read-only places by ``chmod``. Tests run as root here and in CI, where ``chmod`` does not stop
writes, so the commands that must meet a read-only place run in a child process that cannot
bypass file permissions: root without ``CAP_DAC_OVERRIDE``/``CAP_DAC_READ_SEARCH`` (or, where
capabilities cannot be dropped, uid 65534).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from sqlalchemy import event
from sqlalchemy.pool import Pool
from typer.testing import CliRunner

from dsnet_automl._io import atomic_write_text
from dsnet_automl.cli import app
from dsnet_automl.cli._app import storage_problem
from dsnet_automl.errors import DiskFullError
from dsnet_automl.latency.store import LatencyStore
from dsnet_automl.latency.tableio import table_frame
from dsnet_automl.training import checkpoint as ckpt_mod
from dsnet_automl.training import load_checkpoint
from tests._local import free_port

runner = CliRunner()
TRAIN = [
    "--space", "ds_mobilenet_v1_tiny", "--data", "synthetic:32", "--batch-size", "16",
    "--num-random", "1", "--no-progress",
]  # fmt: skip
CLI = [sys.executable, "-c", "from dsnet_automl.cli import main; main()"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def _one_line(output: str) -> str:
    """The single ``error:`` line of ``output`` (and no traceback)."""
    assert "Traceback" not in output, output
    lines = _error_lines(output)
    assert len(lines) == 1, output
    return lines[0]


# ---------------------------------------------------------------- unprivileged children
_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2


def _drop_dac_caps() -> None:  # preexec_fn: root that obeys file modes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _nobody() -> None:  # preexec_fn: fallback where capabilities cannot be dropped
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def _open_tree(path: Path) -> None:
    """Let other users traverse ``path`` and its parents and read it (for uid 65534)."""
    for p in [path, *path.parents]:
        if p != Path("/"):
            p.chmod(p.stat().st_mode | 0o055)


def _probe(preexec, tmp: Path) -> bool:
    """Whether a child under ``preexec`` imports the package (and so reaches the interpreter,
    the venv and the checkout) and is refused a write to a 0555 directory."""
    ro = tmp / "probe"
    ro.mkdir(mode=0o755, exist_ok=True)
    if preexec is _nobody:
        _open_tree(ro)
    ro.chmod(0o555)
    code = f"import dsnet_automl; open({str(ro / 'x')!r}, 'w')"
    try:
        r = subprocess.run(
            [sys.executable, "-c", code], preexec_fn=preexec, capture_output=True, text=True,
            env={**os.environ, "HOME": str(tmp)}, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        ro.chmod(0o755)
    return r.returncode != 0 and "PermissionError" in r.stderr


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory):
    """``run(args, tree)``: a child process for which ``chmod`` is real (plain when not root;
    root without the DAC capabilities; else uid 65534, with the test's ``tree`` made
    reachable) and ``HOME`` at ``tree/.home``."""
    tmp = tmp_path_factory.mktemp("probe")
    tmp.chmod(0o777)
    if os.geteuid() != 0:
        preexec = None
    elif _probe(_drop_dac_caps, tmp):
        preexec = _drop_dac_caps
    elif _probe(_nobody, tmp):
        preexec = _nobody
    else:
        pytest.skip("running as root and cannot run a child that obeys file permissions")

    def run(args: list[str], tree: Path, **kw) -> subprocess.CompletedProcess:
        home = tree / ".home"  # writable for the child, whoever it runs as
        home.mkdir(exist_ok=True)
        home.chmod(0o777)
        if preexec is _nobody:  # the test's tree must be reachable by uid 65534
            _open_tree(tree)
            for p in tree.rglob("*"):
                if p.is_dir():
                    p.chmod(p.stat().st_mode | 0o055)
        env = {**os.environ, "HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run(
            args, preexec_fn=preexec, capture_output=True, text=True, env=env, timeout=120, **kw
        )

    return run


# ---------------------------------------------------------------- ENOSPC
def _fill_disk_on_save(monkeypatch, calls: list[int], fail_at: int = 1) -> None:
    """``torch.save`` writes half of its bytes, then fails like ``write(2)`` on a full disk
    (ENOSPC), on the ``fail_at``-th call."""
    real = torch.save

    def save(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) != fail_at:
            return real(obj, f, *a, **kw)
        buf = io.BytesIO()
        real(obj, buf, *a, **kw)
        Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(ckpt_mod.torch, "save", save)


@pytest.mark.fault(
    fault="Disk full (ENOSPC) during a Stage I checkpoint write",
    injected="the checkpoint write fails half-way with ENOSPC (torch.save patched in-process)",
    sees="one line: no space left on device writing RUN/checkpoint.pt (needs ~N MB, M free "
    "on /mount): free space and re-run; the previous file is unchanged",
    kept="the previous checkpoint, byte for byte (no temp file left); --resume finishes",
)
def test_enospc_during_checkpoint_keeps_previous_and_resume_finishes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--epochs", "1", *TRAIN])
    assert r.exit_code == 0, r.output
    ckpt = out / "checkpoint.pt"
    before = _md5(ckpt)

    calls: list[int] = []
    _fill_disk_on_save(monkeypatch, calls)
    resume = ["train-supernet", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]
    r = runner.invoke(app, resume)
    assert r.exit_code == 1 and calls, r.output
    line = _one_line(r.output)
    assert f"no space left on device writing {ckpt}" in line, line
    assert "needs ~" in line and "free on " in line, line
    assert "free space and re-run; the previous file is unchanged" in line, line
    assert _md5(ckpt) == before and load_checkpoint(ckpt)["epoch"] >= 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.undo()  # space freed
    r = runner.invoke(app, resume)
    assert r.exit_code == 0 and "after 2 epochs" in r.output, r.output
    assert _md5(ckpt) != before


def test_torch_write_failure_and_stray_oserrors_are_one_line(tmp_path, monkeypatch):
    """torch.save's errno-less 'file write failed' is a full disk too; an ENOSPC/EROFS/EACCES
    that escapes outside :func:`atomic_path` is one line for ``handle_errors``."""
    path = tmp_path / "c.pt"
    ckpt_mod.save_checkpoint(path, {"x": 1})
    before = _md5(path)

    def save(obj, f, *a, **kw):
        Path(f).write_bytes(b"PK" * 1000)
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
            "file data/0: file write failed"
        )

    monkeypatch.setattr(ckpt_mod.torch, "save", save)
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*c\.pt"):
        ckpt_mod.save_checkpoint(path, {"x": 2})
    assert _md5(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    monkeypatch.undo()

    for code, words in (
        (errno.ENOSPC, "no space left on device writing /x/metrics.csv"),
        (errno.EDQUOT, "disk quota exceeded writing /x/metrics.csv"),
        (errno.EROFS, "cannot write to /x/metrics.csv: read-only file system"),
        (errno.EACCES, "cannot access /x/metrics.csv: permission denied"),
    ):
        e = OSError(code, os.strerror(code), "/x/metrics.csv")
        try:
            raise ValueError("wrapped") from e
        except ValueError as wrapped:
            msg = storage_problem(wrapped)
        assert msg is not None and msg.startswith(words) and "\n" not in msg, msg
        assert "unchanged" not in msg  # a plain write may have truncated the file
    assert storage_problem(OSError(errno.ENOENT, "nope", "/x")) is None
    msg = storage_problem(OSError(errno.ENOSPC, "No space left on device"))  # no file name
    assert msg is not None and msg.startswith("no space left on device (") and "free on" in msg

    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "replace", _raise(errno.EROFS))
    with pytest.raises(OSError, match=r"cannot write to .*/ro: read-only file system"):
        atomic_write_text(ro / "t.txt", "x")
    assert list(ro.iterdir()) == []


def _raise(code: int):
    def f(*a, **kw):
        raise OSError(code, os.strerror(code), str(a[0]) if a else None)

    return f


# ---------------------------------------------------------------- SQLITE_FULL
@pytest.mark.fault(
    fault="Database full (SQLITE_FULL) while writing latency rows",
    injected="the SQLite file is capped at its current size (PRAGMA max_page_count on connect)",
    sees="one line: latency database URL: database or disk is full; the disk (or quota) "
    "holding it is full: free space and re-run; what was written before is kept",
    kept="the rows written before (tables show lists them unchanged); the re-run completes",
)
def test_sqlite_full_while_writing_latency_rows(tmp_path):
    db = tmp_path / "latency.db"
    url = f"sqlite:///{db}"
    space = ["--space", "ds_mobilenet_v1_tiny", "--db", url]
    r = runner.invoke(app, ["tables", "predict", "jetson", *space])
    assert r.exit_code == 0, r.output
    store = LatencyStore(url)
    before = table_frame(store, "jetson-orin-nano")
    store.close()
    assert len(before) > 0

    cap = _cap_at_current_size(db)
    event.listen(Pool, "connect", cap)
    try:
        r = runner.invoke(app, ["tables", "predict", "pi5", *space])
    finally:
        event.remove(Pool, "connect", cap)
    assert r.exit_code == 1, r.output
    line = _one_line(r.output)
    assert f"latency database {url}: database or disk is full" in line, line
    assert "free space and re-run; what was written before is kept" in line, line

    r = runner.invoke(app, ["tables", "show", "jetson", "--limit", "0", "--db", url])
    assert r.exit_code == 0 and f"{len(before)} rows" in r.output, r.output
    store = LatencyStore(url)
    after = table_frame(store, "jetson-orin-nano")
    store.close()
    assert after.equals(before)

    r = runner.invoke(app, ["tables", "predict", "pi5", *space])  # space freed
    assert r.exit_code == 0 and "predicted block rows for raspberry-pi-5" in r.output, r.output


def _cap_at_current_size(db: Path):
    """A pool ``connect`` listener that caps the SQLite file ``db`` at its current page count:
    any write that needs one more page fails with SQLite's own ``SQLITE_FULL``."""

    def cap(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        if any(row[2] == str(db) for row in cur.execute("PRAGMA database_list").fetchall()):
            n = cur.execute("PRAGMA page_count").fetchone()[0]
            cur.execute(f"PRAGMA max_page_count={n}")
        cur.close()

    return cap


@pytest.mark.fault(
    fault="Database full (SQLITE_FULL) while writing a study trial",
    injected="the study's SQLite file is capped at its current size (PRAGMA max_page_count); "
    "Optuna writes in-process",
    sees="the line the CLI's error handler prints: database URL: database or disk is full; the "
    "disk (or quota) holding it is full: free space and re-run; what was written before is kept",
    kept="the trials written before; the re-run adds its trials",
)
def test_sqlite_full_while_writing_a_study_trial(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    values = [t.value for t in study.trials]

    def big(t):  # a trial that needs a new page: a 4 kB attribute
        t.set_user_attr("blob", "z" * 4000)
        return t.suggest_float("x", 0, 1)

    storage.engine.dispose()  # new connections meet the cap
    cap = _cap_at_current_size(db)
    event.listen(Pool, "connect", cap)
    try:
        with pytest.raises(Exception) as info:
            for _ in range(10):
                study.optimize(big, n_trials=1)
    finally:
        event.remove(Pool, "connect", cap)
        storage.engine.dispose()
    msg = storage_problem(info.value)
    assert msg == (
        f"database {url}: database or disk is full; the disk (or quota) holding it is full: "
        "free space and re-run; what was written before is kept"
    ), msg

    again = optuna.load_study(study_name="s", storage=url)
    done = [t for t in again.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.value for t in done[:3]] == values
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # space freed
    assert len(again.trials) >= len(done) + 2


# ---------------------------------------------------------------- read-only places
@pytest.mark.fault(
    fault="Read-only run directory",
    injected="train-supernet --out into a directory chmod 0555 (child process that obeys "
    "file modes)",
    sees="one line before any training: cannot write to RUN: permission denied; choose "
    "another --out or fix its permissions",
    kept="the directory as it was (nothing created); the re-run after chmod u+w completes",
)
def test_read_only_run_dir_fails_before_any_work(tmp_path, unprivileged):
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "keep.txt").write_text("mine\n")
    parent.chmod(0o555)
    out = parent / "run"
    try:
        r = unprivileged([*CLI, "train-supernet", "--out", str(out), "--epochs", "1", *TRAIN],
                         tree=tmp_path)  # fmt: skip
    finally:
        parent.chmod(0o755)
    assert r.returncode == 1, r.stdout + r.stderr
    line = _one_line(r.stderr)
    assert line == (
        f"error: cannot write to {out}: permission denied; choose another --out or fix its "
        "permissions"
    ), line
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt"]
    assert "epoch" not in r.stdout.lower()

    r = runner.invoke(app, ["train-supernet", "--out", str(out), "--epochs", "1", *TRAIN])
    assert r.exit_code == 0 and (out / "checkpoint.pt").is_file(), r.output  # after chmod u+w


_READ_ONLY_CHILD = textwrap.dedent(
    """
    import json, sys
    from typer.testing import CliRunner
    from dsnet_automl.cli import app
    from dsnet_automl.cli.search import dashboard_storage
    url = sys.argv[1]
    runner = CliRunner()
    out = {}
    for name, args in (
        ("list", ["tables", "list", "--db", url]),
        ("show", ["tables", "show", "jetson", "--limit", "0", "--db", url]),
        ("predict", ["tables", "predict", "pi5", "--space", "ds_mobilenet_v1_tiny", "--db", url]),
    ):
        r = runner.invoke(app, args, env={"COLUMNS": "200"})
        out[name] = [r.exit_code, r.output]
    # a study write (Optuna's own engine) is one line naming the database
    import optuna
    from dsnet_automl.cli._app import storage_problem
    try:
        optuna.create_study(study_name="s2", storage=url)
        out["study_write"] = None
    except Exception as e:
        out["study_write"] = storage_problem(e)
    # the dashboard command's server, on the storage it opens
    import threading, time, urllib.request
    from optuna_dashboard import run_server
    storage, port = dashboard_storage(url), int(sys.argv[2])
    kw = {"host": "127.0.0.1", "port": port}
    threading.Thread(target=run_server, args=(storage,), kwargs=kw, daemon=True).start()
    body, deadline = None, time.time() + 30
    while body is None and time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                body = json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    summaries = (body or {}).get("study_summaries", [])
    names = [s["study_name"] for s in summaries]
    sid = summaries[0]["study_id"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=5) as r:
        trials = len(json.loads(r.read())["trials"])
    out["dashboard"] = [type(storage).__name__, names, trials]
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.fault(
    fault="Read-only study/latency database (file 0444, directory 0555)",
    injected="chmod the SQLite file (WAL mode, a latency table and an Optuna study) and its "
    "directory; commands run in a child process that obeys file modes",
    sees="tables list, tables show and the dashboard read it; a write is one line: latency "
    "database DB is read-only here (...): nothing was written; fix its permissions or pass "
    "another --db",
    kept="the database, byte for byte (no -wal/-shm created); writes work after chmod u+w",
)
def test_read_only_database_is_readable_and_writes_refused(tmp_path, unprivileged):
    import optuna

    d = tmp_path / "share"
    d.mkdir()
    db = d / "latency.db"
    url = f"sqlite:///{db}"
    r = runner.invoke(app, ["tables", "predict", "jetson", "--space", "ds_mobilenet_v1_tiny",
                            "--db", url])  # fmt: skip
    assert r.exit_code == 0, r.output
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s1", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    del study
    import gc

    gc.collect()
    # a WAL database, as the stores leave it
    assert db.read_bytes()[18:20] == b"\x02\x02"
    files_before = sorted(p.name for p in d.iterdir())
    before = _md5(db)
    db.chmod(0o444)
    d.chmod(0o555)
    try:
        port = str(free_port())
        r = unprivileged([sys.executable, "-c", _READ_ONLY_CHILD, url, port], tree=tmp_path)
    finally:
        d.chmod(0o755)
        db.chmod(0o644)
    assert r.returncode == 0 and "RESULT" in r.stdout, r.stdout + r.stderr
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    assert res["list"][0] == 0 and "jetson-orin-nano" in res["list"][1], res["list"]
    assert "predicted 102" in res["list"][1], res["list"]
    assert res["show"][0] == 0 and "jetson-orin-nano: 306 rows" in res["show"][1], res["show"]
    assert res["predict"][0] == 1, res["predict"]
    line = _one_line(res["predict"][1])
    assert line == (
        f"error: latency database {db} is read-only here (the file or its directory is not "
        "writable): nothing was written; fix its permissions or pass another --db"
    ), line
    assert res["dashboard"] == ["RDBStorage", ["s1"], 2], res["dashboard"]
    msg = res["study_write"]
    assert msg and msg.startswith(f"database {url}: ") and msg.endswith("pass another --db"), msg
    assert _md5(db) == before and sorted(p.name for p in d.iterdir()) == files_before

    r = runner.invoke(app, ["tables", "predict", "pi5", "--space", "ds_mobilenet_v1_tiny",
                            "--db", url])  # after chmod u+w  # fmt: skip
    assert r.exit_code == 0 and "predicted block rows for raspberry-pi-5" in r.output, r.output
