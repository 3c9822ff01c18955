"""What the tests' local services share: a free loopback port, Debian packages installed on a
fresh machine, and a real optuna-dashboard process asked for its studies."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def act_once(
    find: Callable[[], T | None], act: Callable[[T], bool], poll_s: float
) -> Iterator[list]:
    """A background thread polls ``find()`` and calls ``act`` on the first thing it finds;
    when ``act`` returns False (the thing was gone) it looks again. The list yielded gets what
    was acted on, once; the thread stops on exit."""
    done, acted = threading.Event(), []

    def loop() -> None:
        while not done.is_set():
            found = find()
            if found is not None and act(found):
                acted.append(found)
                return
            time.sleep(poll_s)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield acted
    finally:
        done.set()
        t.join()


def ensure_debian_package(package: str, find: Callable[[], T | None]) -> T | None:
    """``find()``; when it finds nothing on a Debian machine where the tests run as root,
    ``package`` is installed first (``apt-get update`` only if the install fails): the test
    set-up brings its own service, on a fresh machine too."""
    if find() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    return find()


def dashboard_studies(cmd: list[str], port: int, timeout_s: float) -> dict:
    """Run ``cmd`` (a dashboard server) as README runs it (venv not activated: no
    optuna-dashboard on PATH) until it answers ``/api/studies``; -> ``{name: summary}``. The
    server gets SIGTERM at the end and must go with it."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline, body = time.time() + timeout_s, None
        while time.time() < deadline and body is None and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.3)
        assert body is not None, f"optuna-dashboard did not answer: {proc.stderr.read()!r}"
        return {s["study_name"]: s for s in body["study_summaries"]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
