"""A real OpenSSH server on the loopback interface, and a "device" python holding only numpy and
onnxruntime: the remote end of the remote-profiling tests and benchmark.

``sshd`` runs from Debian's ``openssh-server`` (``.ci/run`` installs it). It is started with an
absolute config path (it re-executes itself), ``StrictModes no`` (keys in temp dirs) and
``ListenAddress 127.0.0.1`` on a free port; the client side is a generated ``ssh_config`` with a
host alias, exactly what a user's ``~/.ssh/config`` holds for a Jetson.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests._local import ensure_debian_package, free_port


def find_sshd() -> str | None:
    return shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


def ensure_sshd() -> str | None:
    """The sshd binary (Debian's openssh-server installed first on a fresh machine)."""
    return ensure_debian_package("openssh-server", find_sshd)


def _sftp() -> str:
    paths = ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server")
    return next((p for p in paths if Path(p).exists()), "internal-sftp")


ALIAS = "dsnet-device"
# numpy and onnxruntime as pinned by the package (the device needs nothing else of ours)
DEVICE_PACKAGES = ("numpy==2.4.6", "onnxruntime==1.32.0")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class LoopbackSshd:
    proc: subprocess.Popen
    port: int
    ssh_config: Path  # client config: Host dsnet-device -> 127.0.0.1:port with the right key
    other_key: Path  # a key the server does not accept
    root: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def client_config(self, name: str, **overrides: str) -> Path:
        """Another client config (``Port``/``IdentityFile`` overridden) for failure tests."""
        lines = self.ssh_config.read_text().splitlines()
        out = []
        for ln in lines:
            key = ln.strip().split(" ", 1)[0]
            out.append(f"  {key} {overrides[key]}" if key in overrides else ln)
        path = self.root / name
        path.write_text("\n".join(out) + "\n")
        return path


def start_sshd(root: Path) -> LoopbackSshd:
    """Start sshd on 127.0.0.1:<free port>; raises RuntimeError when it does not come up."""
    sshd = ensure_sshd()
    if sshd is None:
        raise RuntimeError("sshd not found: install openssh-server (apt install openssh-server)")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "id_device", "id_other"):
        if not (root / name).exists():
            _keygen(root / name)
    shutil.copy(root / "id_device.pub", root / "authorized_keys")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = root / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel ERROR\n"
        f"Subsystem sftp {_sftp()}\n"
    )
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("sshd did not listen within 15 s")
    client = root / "ssh_config"
    client.write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {root / 'id_device'}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    return LoopbackSshd(proc, port, client, root / "id_other", root)


def device_python(root: Path, packages: tuple[str, ...] = DEVICE_PACKAGES) -> Path:
    """A venv at ``root`` holding only ``packages`` (no dependencies pulled in): the device's
    python. Reused when it already exists."""
    root = Path(root)
    py = root / "bin" / "python"
    marker = root / ".packages"
    if py.exists() and marker.exists() and marker.read_text() == " ".join(packages):
        return py
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    if packages:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
             *packages],
            check=True,
        )  # fmt: skip
    marker.write_text(" ".join(packages))
    return py
