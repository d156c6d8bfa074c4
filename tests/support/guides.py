"""A guide in docs/ run as a new user would: its ``sh`` blocks in order, in one shell working directory, a kubeconfig
with a context per cluster and ./bin (and the venv's console scripts) first on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rig.binaries import REPO_ROOT, binary

BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Section:
    title: str
    commands: tuple[str, ...]  # each fenced sh block, in order


def guide_sections(text: str) -> list[Section]:
    """The guide's ``## `` sections with their ``sh`` blocks (a section without any is left out)."""
    sections = []
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = chunk.partition("\n")
        blocks = tuple(BLOCK.findall(body))
        if blocks:
            sections.append(Section(title.strip(), blocks))
    return sections


class Shell:
    """Runs the guide's blocks as a user's shell would: one working directory, a kubeconfig with a context per
    cluster, ./bin first on PATH. Each block runs with ``set -euo pipefail``: a failing command fails the test."""

    def __init__(self, workdir: Path, kubeconfigs: list[Path], env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        (workdir / "charts").symlink_to(REPO_ROOT / "charts")
        tools = {str(Path(binary(name)).parent) for name in ("helm", "kubectl", "promtool")}
        tools.add(str(Path(sys.executable).parent))  # the wheel's console scripts: fleetdns
        self.env = {**os.environ, "KUBECONFIG": os.pathsep.join(map(str, kubeconfigs)),
                    "PATH": os.pathsep.join([*sorted(tools), os.environ["PATH"]]),
                    "HELM_CACHE_HOME": str(workdir / ".helm/cache"), "HELM_CONFIG_HOME": str(workdir / ".helm/config"),
                    "HELM_DATA_HOME": str(workdir / ".helm/data"), **(env or {})}
        self.ran: list[str] = []

    def run(self, section: Section) -> str:
        output = []
        for block in section.commands:
            result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], cwd=self.workdir, env=self.env,
                                    capture_output=True, text=True, timeout=180)
            assert result.returncode == 0, \
                f"docs/install.md, section {section.title!r}: a block failed ({result.returncode}):\n{block}\n" \
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            self.ran.append(block)
            output.append(result.stdout)
        return "".join(output)

    def kubectl(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "KUBECONFIG": str(kubeconfig)} if kubeconfig else self.env
        return subprocess.run([binary("kubectl"), *args], cwd=self.workdir, env=env, capture_output=True, text=True,
                              timeout=60)
