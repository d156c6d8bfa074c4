"""What a user installs: the wheel holds the product (aggregator, webhook provider, shared core) and nothing of
the test rig, and the product's runtime imports stay within its declared dependencies."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("fleetdns", "aggregator", "webhook_provider", "prober", "serving", "cli")
TEST_ONLY_MODULES = {"rig", "tests", "bench", "hack", "requests", "cryptography", "pytest", "schemathesis",
                     "hypothesis"}

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "fleetdns"  # setuptools writes build/ next to the sources
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "bin", ".rig", "build", "*.egg-info", "__pycache__", ".*_cache"))
    # the venv's setuptools (the test extra pins the build backend's floor): an isolated build would make a fresh
    # environment and install setuptools into it first, minutes on a loaded 2-core machine
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(source)], check=True, timeout=300)
    (built,) = out.glob("fleetdns-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_ships_the_product_and_not_the_rig(wheel: zipfile.ZipFile) -> None:
    files = [name for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")]
    assert {name.split("/")[0] for name in files} == set(PRODUCT_PACKAGES)
    assert [name for name in files if set(name.split("/")[:-1]) & TEST_ONLY_MODULES] == []


def test_wheel_ships_the_webhooks_openapi_description(wheel: zipfile.ZipFile) -> None:
    """The webhook reads it at start to serve GET /openapi.yaml: without it the installed webhook would not start."""
    shipped = REPO_ROOT / "webhook_provider" / "openapi.yaml"
    assert wheel.read("webhook_provider/openapi.yaml") == shipped.read_bytes()


def test_wheel_needs_no_test_dependencies_at_runtime(wheel: zipfile.ZipFile) -> None:
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    runtime = [req for req in metadata.get_all("Requires-Dist") or [] if "extra ==" not in req]
    names = {req.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip().lower() for req in runtime}
    assert not names & {"requests", "cryptography", "pytest"}, runtime


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {part for alias in node.names for part in alias.name.split(".")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= set(node.module.split("."))
    return found


@pytest.mark.parametrize("package", PRODUCT_PACKAGES)
def test_product_code_never_imports_the_rig_or_test_libraries(package: str) -> None:
    offenders = {str(path.relative_to(REPO_ROOT)): sorted(_imported_modules(path) & TEST_ONLY_MODULES)
                 for path in (REPO_ROOT / package).rglob("*.py")}
    assert {path: mods for path, mods in offenders.items() if mods} == {}
