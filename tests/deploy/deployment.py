"""Start and stop a local Flower deployment (SuperLink, SuperNodes, SuperExecs) for the App.

Every process is started here, in its own session, on 127.0.0.1 and a free port, with its
output in a log file; :meth:`Deployment.close` stops each by its PID (and the processes it
spawned, found through /proc by parent PID). Every wait is bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "flower_app"
BIN = Path(sys.executable).parent  # flower-superlink & co. of the running interpreter


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: list[Path] = ()) -> Any:
    """Poll ``check`` until it returns something true; past ``timeout`` s fail with the log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}:\n{tail(p)}" for p in logs)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _children(pid: int) -> list[int]:
    """``pid``'s descendants, from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Deployment:
    """Processes of one local Flower deployment, under a temporary directory ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # the processes Flower spawns import this checkout's secagg and the App
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "FLWR_HOME": str(tmp / "flwr-home"),
            "HOME": str(tmp),
            "FLWR_TELEMETRY_ENABLED": "0",
        }

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` (a Flower binary and its options) as process ``name``."""
        with open(self.log(name), "wb") as out:
            proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, cwd=self.tmp, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop process ``name`` and what it spawned, by PID; waits (bounded) for it."""
        proc = self.procs.pop(name)
        for pid in [proc.pid, *_children(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL)."""
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM if self.procs[name].poll() is None else signal.SIGKILL)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``flwr ARGS`` to completion (bounded by ``timeout``)."""
        return subprocess.run([str(BIN / "flwr"), *args], capture_output=True, text=True,
                              env=self.env, cwd=self.tmp, timeout=timeout, check=False)

    def connect(self, port: int, root_certificates: Path | None = None) -> None:
        """Write the Flower CLI's config: a default connection ``test`` to the SuperLink."""
        home = self.tmp / "flwr-home"
        home.mkdir(exist_ok=True)
        security = (f'root-certificates = "{root_certificates}"' if root_certificates
                    else "insecure = true")
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "test"\n\n[superlink.test]\n'
            f'address = "127.0.0.1:{port}"\n{security}\n')

    def run_app(self, run_config: dict[str, Any], timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``flwr run`` the App with these run-config overrides, streaming its log to the end."""
        overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items())
        proc = self.cli("run", str(APP), "test", "--run-config", overrides, "--stream",
                        timeout=timeout)
        (self.tmp / "flwr-run.log").write_text(proc.stdout + proc.stderr)
        return proc
