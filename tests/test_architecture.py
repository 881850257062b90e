"""The import contract of ARCHITECTURE.md holds, names say which modules are pure, and the
contract would catch a break (checked on a copy of the code with the breaks added)."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}
# The Django side of a stage goes by these names (a module, or a package of modules); anything
# else in a stage package is a pure core.
DJANGO_SIDE = {"services", "selectors", "views", "apis", "tasks", "forms", "signals"}
DJANGO_APP_FILES = {"models", "admin", "apps", "urls", "migrations", "management"}


def stage_packages() -> list[str]:
    return [
        name.strip()
        for layer in CONTRACTS["stages"]["layers"]
        for name in layer.split("|")
        if name.strip() != "training.core"
    ]


def module_names(package: str) -> list[str]:
    folder = ROOT / package.replace(".", "/")
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        names.append(".".join(parts))
    return names


def test_the_code_keeps_every_contract(capsys):
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, (
        capsys.readouterr().out
    )


def test_every_stage_module_is_named_django_side_or_listed_as_a_pure_core():
    pure = CONTRACTS["pure"]["source_modules"]
    unlisted = []
    for package in stage_packages():
        for name in module_names(package):
            parts = set(name.split("."))
            if parts & (DJANGO_SIDE | DJANGO_APP_FILES):
                continue
            if not any(name == core or name.startswith(core + ".") for core in pure):
                unlisted.append(name)
    assert unlisted == [], (
        "Name these modules services/selectors/views/apis/tasks/forms, or list them as pure "
        f"cores in pyproject.toml: {unlisted}"
    )
    for core in pure:
        path = ROOT / core.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), core


BREAKS = {
    # A pure core reaching the ORM through a model module.
    "datasets/curation/dedup.py": "from datasets.models import Image  # noqa\n",
    # The training core importing Django.
    "training/core/model.py": "import django  # noqa\n",
    # An earlier stage importing a later one.
    "datasets/ingest/services/uploads.py": "from annotate.queue.services import pool  # noqa\n",
    # A service importing its own task module, which imports it back.
    "datasets/releases/services.py": "from datasets.releases import tasks  # noqa\n",
    # A model module importing a stage.
    "annotate/models.py": "from annotate.agreement import selectors  # noqa\n",
}


@pytest.fixture
def broken_copy(tmp_path):
    for package in CONFIG["root_packages"]:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative, line in BREAKS.items():
        path = tmp_path / relative
        path.write_text(path.read_text() + line)
    return tmp_path


def test_the_contract_fails_on_each_kind_of_break(broken_copy):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo"],
        cwd=broken_copy,
        env={"PYTHONPATH": str(broken_copy), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    report = result.stdout
    for contract in ("core", "pure", "stages", "acyclic", "base"):
        assert f"{CONTRACTS[contract]['name']} BROKEN" in " ".join(report.split()), report
    assert "datasets.curation.dedup -> datasets.models" in report
    assert "training.core.model -> django" in report
    assert "datasets.ingest.services.uploads -> annotate.queue.services" in report
    assert "No cycles are allowed in datasets.releases." in report
    assert "annotate.models -> annotate.agreement.selectors" in report


def _loaded_django_side(modules: list[str]) -> list[str]:
    """Import ``modules`` in a fresh interpreter; the Django-side top-level packages it loaded."""
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'rest_framework', 'celery', 'config'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize(
    "core",
    [core for core in CONTRACTS["pure"]["source_modules"]],
)
def test_importing_a_pure_core_loads_no_django(core):
    """What the static contract cannot see: a third-party package, a stage package's __init__ or
    an importlib call that brings Django in when the core is imported."""
    assert _loaded_django_side([core]) == []


def test_importing_the_training_core_loads_no_django():
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "training" / "core").glob("*.py")
        if path.stem != "__init__"
    )
    assert len(modules) >= 10
    assert _loaded_django_side([*modules, "training.__main__"]) == []
