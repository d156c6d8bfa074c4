"""The machine a benchmark ran on, and the CPU time its processes used: measured the same way in every report."""

from __future__ import annotations

import contextlib
import os
import platform

TICK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """CPU model, CPU count, RAM and platform, for the report's header."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as info:
        mem_kb = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
    return f"{cpu}, {os.cpu_count()} CPUs, {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.platform()}"


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK
