"""A real Prometheus scraping the rig's components every second and evaluating the chart's alerting rules.

The rules are the shipped file's expressions and labels; only each ``for`` is shortened (``RIG_FOR``), so an alert
is seen firing on the live series within seconds. The durations themselves are checked by ``promtool test rules``
(tests/install/test_observability.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from rig.binaries import REPO_ROOT, binary
from rig.ports import free_port
from rig.process import ManagedProcess

RULES = REPO_ROOT / "charts" / "fleetdns" / "files" / "prometheus-rules.yaml"
RIG_FOR = "2s"
START_TIMEOUT = 60.0


class Prometheus:
    """``targets``: the ``/metrics`` URLs to scrape by job (``Federation.metrics_targets``)."""

    def __init__(self, workdir: Path, targets: Mapping[str, list[str]]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = RIG_FOR
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                  "rule_files": [str(workdir / "rules.yaml")],
                  "scrape_configs": [_job(job, urls) for job, urls in sorted(targets.items())]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = ManagedProcess("prometheus", [
            binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h", "--log.level=warn"], workdir / "prometheus.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        self.process.start()
        self.process.wait_until(lambda: requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200,
                                START_TIMEOUT, "ready (/-/ready)")
        return self

    def stop(self) -> None:
        self.process.stop()

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus holds now (state pending or firing), as its API gives them."""
        return requests.get(f"{self.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]

    def firing(self, name: str) -> list[dict[str, str]]:
        """The labels of each firing alert ``name``."""
        return [a["labels"] for a in self.alerts() if a["labels"].get("alertname") == name and a["state"] == "firing"]

    def targets_up(self) -> bool:
        active = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


def _job(job: str, urls: list[str]) -> dict[str, Any]:
    paths = {urlsplit(u).path for u in urls}
    if len(paths) != 1:
        raise ValueError(f"job {job}: one metrics path per job, got {sorted(paths)}")
    return {"job_name": job, "metrics_path": paths.pop(),
            "static_configs": [{"targets": [urlsplit(u).netloc for u in urls]}]}
