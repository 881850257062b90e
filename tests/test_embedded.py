"""Issue 18: `make run`'s processes (bin/run-embedded under bin/embedded-supervisor) outlive a
killed beat or worker and all stop on a signal, leaving nothing running.

Real processes throughout: the embedded default (SQLite, filesystem broker) in a var folder of
the test's own, gunicorn on a free port, beat running the recoveries every second
(CONCORD_RECOVER_SECONDS), so that a scheduled task is seen to go through beat, the broker and
the worker. Every process started carries a marker in its environment, which is how the tests
find what is left (and the clean-up kills it, whatever failed).
"""

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from config.beat import BEAT_LOCKED

ROOT = Path(__file__).resolve().parents[1]
SUPERVISOR = ROOT / "bin" / "embedded-supervisor"
MARKER = "CONCORD_TEST_EMBEDDED"
GRACE = 20  # STOP_GRACE in these tests: a Celery warm shutdown takes seconds
BOOT_SECONDS = 90  # a loaded machine: the web, worker and beat each import Django and the apps
SCHEDULED = re.compile(r"Sending due task recover-imports \(ingest\.recover\)")
SUCCEEDED = re.compile(r"Task ingest\.recover\[[0-9a-f-]+\] succeeded")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _settings_free_env() -> dict[str, str]:
    """This environment without the settings of the test run: the embedded default."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CONCORD_", "CELERY_", "DATABASE_", "REDIS_"))
        and key not in ("DEBUG", "SECRET_KEY", "MEDIA_ROOT")
    }


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A var folder with the database migrated, copied by each test (migrating takes a while)."""
    var = tmp_path_factory.mktemp("embedded") / "var"
    env = _settings_free_env() | {"CONCORD_VAR_DIR": str(var), "SECRET_KEY": "test"}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return var


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _marked(marker: str) -> set[int]:
    """Every live process whose environment carries ``marker`` (zombies have none)."""
    needle = f"{MARKER}={marker}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.add(int(entry.name))
            except OSError:  # gone meanwhile, or not ours
                pass
    return pids


def _kill_marked(marker: str) -> None:
    for pid in _marked(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    """The parent of ``pid`` (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # "pid (name) state ppid ...": the name may hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> set[int]:
    """The live children of ``pid``."""
    return {
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent(int(entry.name)) == pid
    }


def _wait(predicate, what: str, log: Path, seconds: float = BOOT_SECONDS):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            pytest.fail(f"not within {seconds} s: {what}\n--- log ---\n{tail}")
        time.sleep(0.2)


class Embedded:
    """bin/run-embedded in a folder of its own, started as `make run` starts it."""

    def __init__(self, tmp_path: Path, migrated: Path, wrap: bool = False):
        self.var = tmp_path / "var"
        shutil.copytree(migrated, self.var)
        self.log = tmp_path / "embedded.log"
        self.marker = uuid.uuid4().hex
        self.port = _free_port()
        env = _settings_free_env() | {
            "CONCORD_VAR_DIR": str(self.var),
            "SECRET_KEY": "test",
            "PORT": str(self.port),
            "WEB_WORKERS": "1",
            "WEB_THREADS": "2",
            "STOP_GRACE": str(GRACE),
            "CONCORD_RECOVER_SECONDS": "1",
            MARKER: self.marker,
        }
        command = ["bin/run-embedded", sys.executable]
        if wrap:
            # As under make: a shell that waits for it, in one process group with it.
            command = ["bash", "-c", '"$@"; echo "run-embedded ended: $?"', "bash", *command]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def child(self, role: str, other_than: int | None = None) -> int:
        """The supervisor's child running ``role`` (web, worker or beat)."""
        words = {"beat": " config beat ", "worker": " config worker ", "web": " config.wsgi "}[role]

        def find():
            for pid in _marked(self.marker) - {other_than}:
                # Not the worker's pool nor gunicorn's workers, which run their parent's command
                # (and outlive a killed parent for a moment), nor the supervisor, whose command
                # line holds every child's.
                if words in f" {_cmdline(pid)} " and SUPERVISOR.name in _cmdline(_parent(pid)):
                    return pid
            return None

        return _wait(find, f"a {role} process other than {other_than}", self.log)

    def healthy(self) -> None:
        def answers():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        _wait(answers, "/healthz answered", self.log)

    def scheduled_task_ran_after(self, offset: int) -> None:
        """Beat sent ingest.recover after ``offset`` in the log, and a worker ran it."""

        def ran():
            text = self.text()
            sent = SCHEDULED.search(text, offset)
            return sent and SUCCEEDED.search(text, sent.end())

        _wait(ran, "beat sent ingest.recover and the worker ran it", self.log)

    def cleanup(self) -> None:
        _kill_marked(self.marker)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def embedded(tmp_path, migrated):
    started: list[Embedded] = []

    def start(**kwargs) -> Embedded:
        started.append(Embedded(tmp_path, migrated, **kwargs))
        started[-1].healthy()
        return started[-1]

    yield start
    for one in started:
        one.cleanup()


def _stopped_cleanly(run: Embedded) -> None:
    """SIGTERM to the supervisor: it exits 0 (every child stopped within the grace period) and
    leaves no process behind."""
    os.kill(run.process.pid, signal.SIGTERM)
    try:
        status = run.process.wait(timeout=GRACE + 20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {GRACE + 20} s after SIGTERM\n{run.text()[-4000:]}")
    assert status == 0, run.text()[-4000:]
    assert _marked(run.marker) == set(), run.text()[-4000:]


def test_a_killed_beat_is_started_again_and_the_schedule_runs_on(embedded):
    run = embedded()
    beat = run.child("beat")
    run.scheduled_task_ran_after(0)
    lock = Path(f"{run.var / 'celerybeat-schedule'}.lock")
    assert lock.read_text().strip() == str(beat)

    os.kill(beat, signal.SIGKILL)
    again = run.child("beat", other_than=beat)
    offset = len(run.text())
    assert "beat was killed by SIGKILL" in run.text()
    # The dead beat's lock went with it: the new one holds it, and beat's schedule goes on.
    _wait(lambda: lock.read_text().strip() == str(again), "the new beat holds the lock", run.log)
    run.scheduled_task_ran_after(offset)
    _stopped_cleanly(run)


def test_a_killed_worker_is_started_again_with_its_pool_gone(embedded):
    run = embedded()
    worker = run.child("worker")
    run.scheduled_task_ran_after(0)
    pool = _children(worker)
    assert pool  # prefork: the processes that run the tasks

    os.kill(worker, signal.SIGKILL)
    run.child("worker", other_than=worker)
    offset = len(run.text())
    assert "worker was killed by SIGKILL" in run.text()
    # Its pool did not outlive it (two workers would take one task).
    _wait(lambda: not pool & _marked(run.marker), "the old pool gone", run.log)
    _wait(lambda: re.search(r"celery@\S+ ready", run.text()[offset:]), "the worker ready", run.log)
    run.scheduled_task_ran_after(offset)
    _stopped_cleanly(run)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_to_the_process_group_stops_everything(embedded, signum):
    """`kill -TERM -PGID` of `make run`, or Ctrl-C in its terminal (SIGINT to the group)."""
    run = embedded(wrap=True)
    worker = run.child("worker")
    run.child("web")
    _wait(lambda: len(_children(worker)) >= 2, "the worker's pool started", run.log)
    os.killpg(run.process.pid, signum)
    _wait(lambda: not _marked(run.marker), "every process gone", run.log, seconds=GRACE + 20)
    assert "stopping web, worker, beat" in run.text()


def test_the_supervisor_killed_takes_its_children_with_it(embedded):
    """Even a supervisor that could not stop them (SIGKILL, the OOM killer) leaves nothing."""
    run = embedded()
    run.child("worker")
    os.kill(run.process.pid, signal.SIGKILL)
    run.process.wait()
    _wait(lambda: not _marked(run.marker), "every process gone", run.log, seconds=GRACE + 20)


def _python(code: str) -> str:
    """A command line that runs ``code`` in this interpreter."""
    return shlex.join([sys.executable, "-c", code])


def _supervise(tmp_path: Path, marker: str, *processes: str, grace: int = 1) -> subprocess.Popen:
    """bin/embedded-supervisor with a grace period of ``grace`` s, its output in supervisor.log."""
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(SUPERVISOR), "--grace", str(grace), *processes],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, MARKER: marker},
        )


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    """Issue 18 (b): a child hung in its shutdown never keeps the rest running; exit status 1."""
    stubborn = _python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(300)"
    )
    marker = uuid.uuid4().hex
    supervisor = _supervise(tmp_path, marker, f"stubborn={stubborn}", "plain=sleep 300")
    log = tmp_path / "supervisor.log"
    _wait(lambda: "ready" in log.read_text(), "the child started", log, seconds=30)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 1
    text = log.read_text()
    assert "stubborn (pid" in text and "still running after 1 s: SIGKILL" in text
    assert "plain was killed by SIGTERM" in text
    assert not _marked(marker)


def test_a_second_ctrl_c_kills_at_once_and_a_hangup_does_not(tmp_path):
    """The grace period (here 600 s) ends early on another SIGINT only: a terminal also sends
    SIGHUP when `make`, its session leader, dies of the SIGTERM sent to its process group."""
    stubborn = _python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(900)"
    )
    marker = uuid.uuid4().hex
    supervisor = _supervise(tmp_path, marker, f"stubborn={stubborn}", grace=600)
    log = tmp_path / "supervisor.log"
    _wait(lambda: "ready" in log.read_text(), "the child started", log, seconds=30)
    supervisor.send_signal(signal.SIGTERM)
    _wait(lambda: "SIGTERM: stopping stubborn" in log.read_text(), "the stop began", log)
    supervisor.send_signal(signal.SIGHUP)
    _wait(lambda: "SIGHUP while stopping: waiting" in log.read_text(), "the hangup heard", log)
    assert _marked(marker) - {supervisor.pid}  # the child was not killed for it
    supervisor.send_signal(signal.SIGINT)
    assert supervisor.wait(timeout=60) == 1
    text = log.read_text()
    assert "still running after another Ctrl-C (SIGINT): SIGKILL" in text
    assert not _marked(marker)


def test_a_child_that_cannot_start_stops_everything_with_status_2(tmp_path):
    supervisor = _supervise(tmp_path, uuid.uuid4().hex, f"broken={_python('raise SystemExit(3)')}")
    assert supervisor.wait(timeout=60) == 2
    text = (tmp_path / "supervisor.log").read_text()
    assert text.count("broken exited with status 3 after") == 4  # restarted 4 times, backing off
    assert "restarting in 1 s" in text and "restarting in 8 s" in text
    assert "broken exited with status 3 5 times in a row" in text


def test_a_second_beat_on_the_same_folder_exits_and_a_killed_one_blocks_nothing(tmp_path):
    marker = uuid.uuid4().hex
    env = _settings_free_env() | {
        "CONCORD_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test",
        MARKER: marker,
    }
    lock = tmp_path / "var" / "celerybeat-schedule.lock"
    log = tmp_path / "beat.log"

    def beat() -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    first = beat()
    try:
        _wait(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), "lock", log)
        second = beat()
        assert second.wait(timeout=BOOT_SECONDS) != 0
        assert BEAT_LOCKED.format(pid=first.pid, path=lock) in log.read_text()
        assert first.poll() is None

        first.kill()
        first.wait()
        # The lock file is still there, with the dead beat's pid in it: it blocks nothing.
        assert lock.read_text().strip() == str(first.pid)
        third = beat()
        _wait(lambda: lock.read_text().strip() == str(third.pid), "the lock taken again", log)
        assert third.poll() is None
        third.terminate()
        assert third.wait(timeout=30) == 0
    finally:
        _kill_marked(marker)
