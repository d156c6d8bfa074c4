"""Start, wait for and stop one child process with its own process group and log file."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


class RigError(RuntimeError):
    """A rig component failed to start or answer; the message carries the tail of its log."""


def _die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` wrapped so the kernel kills the child if the test process dies, even by SIGKILL.

    util-linux's setpriv sets PR_SET_PDEATHSIG and execs the command (same pid). A Python
    ``preexec_fn`` doing the same deadlocked: forking a process that runs gRPC threads (the etcd
    client) can hang in fork handlers, and ``preexec_fn`` forces a full fork instead of vfork.
    The signal comes when the *thread* that started the child ends: start components from a thread that outlives
    them (never from a pool's worker thread).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RigError("setpriv (util-linux) not found: the rig needs it so components die with the tests")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


class ManagedProcess:
    """A real component run as a child process, logged to ``log_path`` and always reaped."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 inherit_env: bool = True) -> None:
        """``env`` adds to the rig's environment, or (``inherit_env`` false) is the whole of it, as a container's."""
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.inherit_env = inherit_env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                _die_with_parent(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**(os.environ if self.inherit_env else {}), **(self.env or {})},
                start_new_session=True,  # own process group: stop() signals it whole
            )
        _LIVE.add(self)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll ``ready`` until true; fail with the log tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise RigError(f"{self.name} exited with {code} before {what}; log {self.log_path}:\n{self.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - any failure of the probe means "not yet"
                pass
            time.sleep(0.05)
        raise RigError(f"{self.name} not {what} after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL it after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(5)
        self._signal_group(signal.SIGKILL)  # grandchildren that outlived their parent
        _LIVE.discard(self)

    def kill(self) -> None:
        """Stop abruptly, as a crash or a cut cable would."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(5)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.proc.pid, sig)


def stop_together(steps: Iterable[Callable[[], object]]) -> None:
    """Run the stop steps of independent components at once (each takes about a second of graceful shutdown,
    which teardowns used to pay one after the other); every step runs, and the first failure is raised."""
    failures: list[BaseException] = []

    def run(step: Callable[[], object]) -> None:
        try:
            step()
        except BaseException as error:  # noqa: BLE001 - reported after every step ran
            failures.append(error)

    threads = [threading.Thread(target=run, args=(step,), daemon=True) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        proc.stop(timeout=3)
