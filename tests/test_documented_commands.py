"""Issue 15: the commands the README shows work as written on the embedded default once `make
run` has prepared the machine, and production (DEBUG=false said explicitly) stays strict.

Each command runs in its own process from the repository root, with no settings variable set
(no SECRET_KEY, DEBUG, DATABASE_URL or broker: the embedded default), in a VAR_DIR of its own.
`.venv/bin/python` is this interpreter.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from datasets.demo.services import DEMO_SLUG
from tests.sample_data import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETTINGS_VARIABLES = ("SECRET_KEY", "DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")
COMMAND = re.compile(r"(?:\.venv/bin/)?python manage\.py ([a-z_]+)")


def _documented() -> list[str]:
    """Every `manage.py` command line of the README's shell blocks, continuation lines joined."""
    text = README.read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            lines += [part.strip() for part in line.split("&&") if "manage.py" in part]
    return lines


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    environment["CONCORD_VAR_DIR"] = str(tmp_path / "var")
    return environment


def _run(command: str, environment: dict[str, str], timeout: int = 600):
    words = shlex.split(command)
    if words[0] in (".venv/bin/python", "python"):
        words[0] = sys.executable
    return subprocess.run(
        words, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )


def test_every_command_the_readme_and_pages_name_exists():
    from django.core.management import get_commands

    known = set(get_commands())
    texts = [README.read_text()] + [p.read_text() for p in (ROOT / "templates").rglob("*.html")]
    named = {name for text in texts for name in COMMAND.findall(text)}
    assert {"import_coco", "import_manifest", "dedup", "train"} <= named
    assert named <= known, named - known
    # As written means with the interpreter the quick start installs: not a bare `python`.
    for text in texts:
        assert not re.search(r"(?<![/\w])python manage\.py", text)


def test_readme_commands_work_as_written_after_make_run(tmp_path):
    if not (SHARED_DATA / "coco-mini").is_dir():
        pytest.skip(f"sample data absent: {SHARED_DATA}")
    environment = _embedded_env(tmp_path)
    # Without `make run`'s preparation (and no SECRET_KEY), the strict default refuses.
    refused = _run(".venv/bin/python manage.py check", environment)
    assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr
    # What `make run` does before starting the servers.
    assert _run(f"{sys.executable} bin/embedded-env", environment).returncode == 0
    key_file = tmp_path / "var" / "embedded.env"
    assert key_file.stat().st_mode & 0o077 == 0
    key = key_file.read_text()
    assert _run(f"{sys.executable} bin/embedded-env", environment).returncode == 0
    assert key_file.read_text() == key  # generated once, kept
    for command in (
        "manage.py migrate --noinput",
        "manage.py seed_demo --if-empty --images 4",
    ):
        done = _run(f"{sys.executable} {command}", environment)
        assert done.returncode == 0, (command, done.stderr[-2000:])

    slug = DEMO_SLUG
    documented = _documented()
    assert any("import_coco" in line for line in documented)
    ran = 0
    for line in documented:
        # Flickr8k-1k (1,000 images) is the same import as COCO-mini at 12 times the size, and
        # collectstatic/migrate belong to the production set-up; the rest runs as written.
        if "flickr8k-1k" in line or "collectstatic" in line:
            continue
        done = _run(line.replace("PROJECT_SLUG", slug), environment)
        assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
        ran += 1
    assert ran >= 2
    for command in (f"dedup {slug}", f"make_thumbnails {slug}", f"build_release {slug}"):
        done = _run(f".venv/bin/python manage.py {command}", environment)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])


def test_production_stays_strict_even_beside_the_embedded_key(tmp_path):
    environment = _embedded_env(tmp_path)
    assert _run(f"{sys.executable} bin/embedded-env", environment).returncode == 0
    for debug in ("false", "0", "False"):
        strict = _run(".venv/bin/python manage.py check", {**environment, "DEBUG": debug})
        assert strict.returncode != 0 and "SECRET_KEY must be set" in strict.stderr, debug
    given = _run(
        ".venv/bin/python manage.py check",
        {**environment, "DEBUG": "false", "SECRET_KEY": "a-production-key-" + "x" * 40},
    )
    assert given.returncode == 0, given.stderr[-2000:]
