"""A remote device reached through the system OpenSSH client (``ssh``/``scp``).

Why the system client and not a Python SSH library: the user's ``~/.ssh/config`` (host aliases,
``ProxyJump`` jump hosts, per-host keys and users), their agent and known hosts work as they do
in a terminal, with nothing to configure twice. Every call runs with ``BatchMode=yes`` (a
password or host-key prompt fails at once instead of hanging a progress bar) and shares one
master connection (``ControlMaster``), so the many short calls of a profiling run pay one
handshake.

Failures become one :class:`RemoteError` line: unreachable host, refused login, missing python.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import LatencyTableError

__all__ = ["RemoteError", "SshTarget"]

_UNREACHABLE = (
    "could not resolve hostname",
    "connection refused",
    "connection timed out",
    "no route to host",
    "network is unreachable",
    "operation timed out",
    "connection closed by",
    "connection reset",
)


def _quote(arg: str) -> str:
    """Quote for the remote shell, but let it expand a leading ``~/`` (``~/venv/bin/python``)."""
    return "~/" + shlex.quote(arg[2:]) if arg.startswith("~/") else shlex.quote(arg)


class RemoteError(LatencyTableError):
    """A remote device could not be reached or used (one line, says what to do)."""


class SshTarget:
    """``[user@]host[:port]`` reached with ``ssh``; ``ssh_config`` is passed as ``-F``.

    Args:
        host: what ``ssh`` is given (a ``~/.ssh/config`` alias works), optionally ``:port``.
        python: the device's python command (a venv's ``bin/python`` works).
        ssh_config: an ssh config file used instead of ``~/.ssh/config``.
        options: extra ``-o Key=Value`` options.
        connect_timeout_s: how long to wait for the connection.
    """

    def __init__(
        self,
        host: str,
        *,
        python: str = "python3",
        ssh_config: str | Path | None = None,
        options: Sequence[str] = (),
        connect_timeout_s: int = 15,
    ) -> None:
        if not host or host.startswith("-") or any(c.isspace() for c in host):
            raise RemoteError(f"remote host {host!r} is not [user@]host[:port]")
        self.host, _, port = host.partition(":")
        if port and not port.isdigit():
            raise RemoteError(f"remote host {host!r}: port {port!r} is not a number")
        self.port = int(port) if port else None
        self.python = python
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise RemoteError(
                    f"'{tool}' is not installed here: install the OpenSSH client "
                    "(Debian/Ubuntu: apt install openssh-client)"
                )
        self._ctl = tempfile.mkdtemp(prefix="dsnet-ssh-")
        opts = ["BatchMode=yes", f"ConnectTimeout={connect_timeout_s}", "ControlMaster=auto",
                f"ControlPath={self._ctl}/%C", "ControlPersist=120", "ServerAliveInterval=15",
                "ServerAliveCountMax=4", *options]  # fmt: skip
        self._common = [a for o in opts for a in ("-o", o)]
        if ssh_config:
            self._common = ["-F", str(ssh_config), *self._common]

    def __repr__(self) -> str:
        return f"SshTarget({self.label!r})"

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    # ------------------------------------------------------------------ commands
    def _ssh(self, remote: Sequence[str]) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self._common, *port, self.host, "--", " ".join(map(_quote, remote))]

    def _check(self, rc: int, stderr: str, what: str) -> None:
        if rc == 0:
            return
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        low = stderr.lower()
        last = lines[-1] if lines else f"exit status {rc}"
        if rc == 255 and "permission denied" in low:
            raise RemoteError(
                f"{self.label} refused the ssh login ({last}): check the user name, the key "
                "(ssh-add -l) and ~/.ssh/config; password prompts are off (BatchMode)"
            )
        if rc == 255 and ("host key verification failed" in low):
            raise RemoteError(
                f"{self.label}: host key verification failed: connect once with "
                f"'ssh {self.host}' to accept its key, then re-run"
            )
        if rc == 255 and any(k in low for k in _UNREACHABLE):
            raise RemoteError(f"cannot reach {self.label} over ssh: {last}")
        if (
            rc == 127
            or "command not found" in low
            or "no such file or directory" in low
            and (self.python in stderr)
        ):
            raise RemoteError(
                f"{self.label} has no {self.python!r} ({last}): install python3 >= 3.8 there, "
                "or pass --remote-python PATH"
            )
        if rc < 0 or rc in (128 + 9, 128 + 15) or not lines:  # killed, or gone silently
            raise RemoteError(
                f"the connection to {self.label} dropped during {what} ({last}); re-run to "
                "resume: rows already measured are kept"
            )
        if rc == 255:
            raise RemoteError(f"ssh to {self.label} failed: {last}")
        raise RemoteError(f"{what} failed on {self.label}: {last}")

    def run(self, remote: Sequence[str], *, what: str = "remote command", timeout_s: float = 300):
        """Run ``remote`` (argv, quoted for the remote shell); its stdout, or a RemoteError."""
        try:
            p = subprocess.run(
                self._ssh(remote), capture_output=True, text=True, timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{what} on {self.label} took over {timeout_s:.0f} s") from None
        self._check(p.returncode, p.stderr, what)
        return p.stdout

    def python_cmd(self, *args: str) -> list[str]:
        return [*shlex.split(self.python), *args]

    def stream(self, remote: Sequence[str], *, what: str = "remote command") -> Iterator[str]:
        """Run ``remote`` and yield its stdout lines as they come; a RemoteError when it fails
        (after the lines it printed). Closing the generator ends the ssh process."""
        p = subprocess.Popen(
            self._ssh(remote), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, bufsize=1,
        )  # fmt: skip
        try:
            assert p.stdout is not None
            yield from p.stdout
            rc = p.wait()
            err = p.stderr.read() if p.stderr else ""
            self._check(rc, err, what)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()

    def put(self, files: Sequence[str | Path], remote_dir: str) -> None:
        """Copy local ``files`` into ``remote_dir`` (which exists) with ``scp``."""
        port = ["-P", str(self.port)] if self.port else []
        cmd = ["scp", "-q", *self._common, *port, *map(str, files), f"{self.host}:{remote_dir}/"]
        p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        self._check(p.returncode, p.stderr, f"copying {len(files)} file(s)")

    def close(self) -> None:
        """End the shared master connection and remove its socket directory."""
        port = ["-p", str(self.port)] if self.port else []
        subprocess.run(
            ["ssh", *self._common, *port, "-O", "exit", self.host],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=30, check=False,
        )  # fmt: skip
        shutil.rmtree(self._ctl, ignore_errors=True)

    def __enter__(self) -> SshTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
