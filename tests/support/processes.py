"""Processes a test started through a command it ran (the demo, the rig): are any still running?"""

from __future__ import annotations

from pathlib import Path


def processes_under(workdir: Path) -> list[str]:
    """Command lines of the processes still running with ``workdir`` in them (every component the demo starts
    names its data, log or kubeconfig there)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not a process
            continue
        if proc.name.isdigit() and str(workdir) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found
