"""``profile --remote``: against a real OpenSSH server on loopback whose "device" python is a
separate venv holding only numpy and onnxruntime (see tests/_sshd.py; .ci/run installs
openssh-server). Rows measured and stamped with the remote's identity, a killed run resumed
without re-measuring, and each failure one line."""

from __future__ import annotations

import getpass
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsnet_automl.cli import app
from dsnet_automl.factory import create_supernet, load_space
from dsnet_automl.latency import LatencyPredictor, LatencyStore, grid_signatures, load_profile
from dsnet_automl.latency.models import MEASURED
from tests._local import free_port
from tests._sshd import ALIAS, device_python, ensure_sshd, start_sshd

REPO = Path(__file__).resolve().parents[2]
# a narrow grid of the tiny MobileNet: 24 block signatures (the full tiny grid has 102, and
# each signature is one torch.export-based ONNX export, ~0.6 s here)
SPACE = str(REPO / "tests" / "latency" / "narrow_mobilenet.yaml")
N_SIG = 24
CLI = [str(Path(sys.executable).parent / "dsnet-automl")]
FAST = ["--repeats", "5", "--warmup", "2", "--batch-size", "1"]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if ensure_sshd() is None:  # installs Debian's openssh-server when run as root
        msg = "sshd not found: install openssh-server (apt install openssh-server)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    d = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def device_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return device_python(tmp_path_factory.mktemp("device") / "venv")


def _cli(*args: str, env_user: Path, check: bool = True):
    """The CLI in this process (one torch import for many calls); ``.returncode``,
    ``.stdout`` and ``.stderr`` like a finished subprocess."""
    env = {"DSNET_USER_DIR": str(env_user), "COLUMNS": "200"}
    r = CliRunner().invoke(app, list(args), env=env)
    r.returncode = r.exit_code
    if check:
        assert r.exit_code == 0, r.stdout + r.stderr
    return r


def _remote(sshd, py: Path, *extra: str) -> list[str]:
    return ["--remote", ALIAS, "--remote-python", str(py), "--ssh-config", str(sshd.ssh_config),
            *extra]  # fmt: skip


def _rows(db: Path) -> list[tuple]:
    """The block rows (none while the database is still being created)."""
    try:
        with sqlite3.connect(db) as con:
            return con.execute(
                "SELECT signature_id, median_ms, measured_at, source, versions FROM "
                "block_measurements ORDER BY signature_id"
            ).fetchall()
    except sqlite3.OperationalError:
        return []


def test_remote_rows_are_measured_stamped_and_used(sshd, device_py, tmp_path: Path) -> None:
    db = tmp_path / "lat.db"
    out = _cli("profile", "--hw", "jetson", "--space", SPACE, "--validate", "3", *FAST,
               "--db", f"sqlite:///{db}", *_remote(sshd, device_py, "--save-remote"),
               env_user=tmp_path)  # fmt: skip
    assert f"on {ALIAS} (Linux" in out.stdout
    assert f"{N_SIG} block signatures, {N_SIG} measured" in out.stdout
    rows = _rows(db)
    sp = load_space(SPACE)
    net = create_supernet(sp.supernet, space=sp)
    assert len(rows) == len(grid_signatures(net, sp)) == N_SIG
    stamp = json.loads(rows[0][4])
    assert stamp["remote"] == ALIAS and stamp["provider"] == "CPUExecutionProvider"
    assert stamp["onnxruntime"] == "1.32.0" and stamp["uname"].startswith("Linux ")
    assert {r[3] for r in rows} == {MEASURED}
    # nothing is left on the device; the remote settings were saved in the user's override
    assert not (Path(tempfile.gettempdir()) / f"dsnet-automl-profile-{getpass.getuser()}").exists()
    override = tmp_path / "hw_profiles" / "overrides" / "jetson-orin-nano.yaml"
    assert "remote:" in override.read_text()
    # the search's predictor uses the device's rows as evidence
    pred = LatencyPredictor(LatencyStore(f"sqlite:///{db}"), load_profile("jetson"), net,
                            backend="onnxruntime")  # fmt: skip
    assert pred.estimate(sp.largest()).source == MEASURED

    shown = _cli("tables", "show", "jetson", "--limit", "1", "--db", f"sqlite:///{db}",
                 env_user=tmp_path).stdout  # fmt: skip
    assert f"{N_SIG + 3} rows measured over ssh: remote dsnet-device, uname Linux" in shown
    assert "provider CPUExecutionProvider" in shown

    # tables calibrate --measured fits the device's constants from its own rows, into the
    # user's override, leaving the shipped profile as it was
    shipped = (REPO / "hw_profiles" / "jetson-orin-nano.yaml").read_bytes()
    cal = _cli("tables", "calibrate", "jetson", "--measured", "--db", f"sqlite:///{db}",
               env_user=tmp_path)  # fmt: skip
    assert "3 measured figures" in cal.stdout and "held-out (leave-one-network-out)" in cal.stdout
    assert "Kendall tau" in cal.stdout and "your override of jetson-orin-nano" in cal.stdout
    assert (REPO / "hw_profiles" / "jetson-orin-nano.yaml").read_bytes() == shipped
    ov = override.read_text()
    assert "onnxruntime/fp32" in ov and "calibrated on 3 measured measurements" in ov
    assert "host: dsnet-device" in ov  # the saved remote section survived the merge

    # a re-run with only --hw (the saved remote section) measures nothing again
    again = _cli("profile", "--hw", "jetson", "--space", SPACE, "--validate", "3", *FAST,
                 "--db", f"sqlite:///{db}", env_user=tmp_path)  # fmt: skip
    assert f"0 measured, {N_SIG} already in the table" in again.stdout
    assert _rows(db) == rows


def _timer_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "device_timer.py time"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


# both kills are slow-marked (pytest -m slow; ~40 s each on 2 cores, and the default run was
# over its 10 minutes): the default run still resumes a finished remote table (0 measured
# again, test above) and a partly measured local one (test_latency_profiler.py)
@pytest.mark.fault(
    fault="Latency profiling killed (host, or the device's timer over SSH)",
    injected="SIGKILL of the host `profile` process or the device's timer (slow tests)",
    sees="the run ends; rows measured so far are in the table",
    kept="measured rows; the next run measures only what is missing",
)
@pytest.mark.parametrize(
    "where",
    [pytest.param("host", marks=pytest.mark.slow), pytest.param("device", marks=pytest.mark.slow)],
)
def test_killed_run_resumes_without_remeasuring(
    sshd, device_py, tmp_path: Path, where: str
) -> None:
    """SIGKILL the host process (a killed run) or the device's timer (a dropped connection)
    once some rows are in: the next run measures only what is missing."""
    db = tmp_path / "lat.db"
    env = {**os.environ, "DSNET_USER_DIR": str(tmp_path)}
    args = [*CLI, "profile", "--hw", "jetson", "--space", SPACE, "--validate", "2",
            "--repeats", "20", "--warmup", "2", "--batch-size", "1", "--batch-items", "8",
            "--db", f"sqlite:///{db}", *_remote(sshd, device_py)]  # fmt: skip
    p = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)  # fmt: skip
    deadline, killed = time.time() + 120, False
    while time.time() < deadline and not killed:
        n = len(_rows(db)) if db.exists() else 0
        if 4 <= n < N_SIG - 4:
            if where == "host":
                p.kill()
                killed = True
            for pid in _timer_pids() if where == "device" else []:
                try:
                    os.kill(pid, signal.SIGKILL)  # the ssh client and the device's python
                    killed = True
                except ProcessLookupError:  # between batches: look again
                    pass
        assert killed or p.poll() is None, p.communicate()
        time.sleep(0.02)
    assert killed, "no rows within 120 s"
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    if where == "device":
        assert err.strip().count("\n") == 0 and "dsnet-device dropped" in err, err
        assert "re-run to resume" in err
    before = {r[0]: r for r in _rows(db)}
    assert 4 <= len(before) < N_SIG
    out = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{N_SIG - len(before)} measured, {len(before)} already in the table" in out.stdout
    after = {r[0]: r for r in _rows(db)}
    assert len(after) == N_SIG and all(after[k] == before[k] for k in before)  # not re-measured
    assert _timer_pids() == []  # no stale timer left competing for the device


def test_failures_are_one_line(sshd, device_py, tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'lat.db'}"]
    base = ["profile", "--hw", "jetson", "--space", SPACE, *FAST, *db]
    bare = device_python(tmp_path / "bare", packages=())  # python, but no numpy/onnxruntime
    cases = {
        "lacks numpy and onnxruntime: install it there with python3 -m pip install": _remote(
            sshd, bare
        ),
        "refused the ssh login": _remote(sshd, device_py)[:-1]
        + [str(sshd.client_config("other_key", IdentityFile=str(sshd.other_key)))],
        "cannot reach dsnet-device over ssh": _remote(sshd, device_py)[:-1]
        + [str(sshd.client_config("closed_port", Port=str(free_port())))],
        "has no '/nonexistent/python3'": _remote(sshd, Path("/nonexistent/python3")),
        "has no TensorrtExecutionProvider; it has: ": _remote(
            sshd, device_py, "--provider", "TensorrtExecutionProvider"
        ),
        "no trtexec on PATH": _remote(sshd, device_py, "--backend", "tensorrt"),
    }
    for want, extra in cases.items():
        p = _cli(*base, *extra, env_user=tmp_path, check=False)
        assert p.returncode == 1, (want, p.stdout, p.stderr)
        assert p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0, p.stderr
        assert want in p.stderr, p.stderr
    assert not (tmp_path / "lat.db").exists() or not _rows(tmp_path / "lat.db")
