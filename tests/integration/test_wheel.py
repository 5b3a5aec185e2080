"""The wheel as a user gets it: built, installed into a fresh virtualenv outside the checkout,
running examples/userapp/ there (its ``mapper`` command; its own Flask app with mapper's
endpoints mounted, fed by the Cloud Tasks emulator; the status page in headless Chromium).

Also here, in-process: what init_app's prefix moves (every endpoint, the task URLs).

Measured on this shared 2-core machine, pip's cache warm: the build (sdist, then the wheel
from the sdist) 8 s, the virtualenv 6 s, the wheel's install 13 s, the app's requirements
3 s; then 10-15 s per emulator for the command, the served app and the page.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from mapper._version import __version__
from mapper.cli.main import main as cli_group
from mapper.dispatch.messages import SliceTask
from mapper.errors import ConfigurationError
from mapper.settings import Settings
from mapper.testing.process import free_port, listening
from mapper.testing.tasks_emulator import DEFAULT_QUEUE, TasksEmulator, start_tasks_emulator
from mapper.web import init_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "userapp"
WHEEL = f"mapper-{__version__}-py3-none-any.whl"
#: Not the default /_mapper: the queue's tasks must follow MAPPER_URL_PREFIX to the app.
PREFIX = "/ops/mapper"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# seed.py's 120 customers: every fifth inactive (96 active), every third email untidy;
# untidy and active: multiples of 3 that are not multiples of 15 below 120.
SEEDED, ACTIVE, UNTIDY_ACTIVE = 120, 96, 32
COUNTERS = {"processed": ACTIVE, "put": UNTIDY_ACTIVE, "deleted": 0, "normalized": UNTIDY_ACTIVE}


def _inside_checkout(path: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(ROOT)


def _run(command: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


@dataclasses.dataclass
class Built:
    wheel: Path
    sdist: Path


@dataclasses.dataclass
class UserApp:
    """examples/userapp copied outside the checkout, with its own virtualenv."""

    root: Path
    venv: Path
    #: Before the app's requirements (mapper's core install, no extra): the import probe
    #: and ``mapper --help``.
    core_probe: subprocess.CompletedProcess
    core_help: subprocess.CompletedProcess

    def env(self, **extra: str) -> dict[str, str]:
        return _venv_env(self.venv, **extra)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), cwd=self.root, env=env or self.env(), capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip


def _venv_env(venv: Path, **extra: str) -> dict[str, str]:
    """This machine's environment less anything that could lead to the checkout, ``venv`` first."""
    dropped = ("PYTHON", "VIRTUAL_ENV", "MAPPER_", "GAE_", "DATASTORE_", "CLOUD_TASKS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p and not _inside_checkout(p)]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *paths])
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build``: the sdist, then the wheel from the sdist.

    From a copy holding only what the build reads, so the checkout gets no build
    litter and nothing outside these files can slip into the wheel.
    """
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # No dot entries (emulator logs and virtualenvs left by earlier runs): only the sources.
    ignore = shutil.ignore_patterns(".*", "__pycache__", "*.pyc")
    shutil.copytree(ROOT / "mapper", source / "mapper", ignore=ignore)
    _run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(source)])
    return Built(work / "dist" / WHEEL, work / "dist" / f"mapper-{__version__}.tar.gz")


@pytest.fixture(scope="session")
def user_app(built: Built, tmp_path_factory: pytest.TempPathFactory) -> UserApp:
    """The example app as a user has it: its files, the wheel, a fresh virtualenv."""
    base = tmp_path_factory.mktemp("userapp")
    assert not _inside_checkout(base), base
    root = base / "app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(built.wheel, root / WHEEL)
    assert f"./{WHEEL}[web]" in (root / "requirements.txt").read_text(), "name this version"
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    env = _venv_env(venv)
    pip = ["python", "-m", "pip", "install", "-q"]
    _run([*pip, f"./{WHEEL}"], cwd=root, env=env)
    probe = "import importlib.util as u, mapper, mapper.cli.main; print(u.find_spec('flask'))"
    core_probe = subprocess.run(["python", "-c", probe], cwd=root, env=env, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
    core_help = subprocess.run(["mapper", "--help"], cwd=root, env=env, capture_output=True,
                               text=True, timeout=60)  # fmt: skip
    _run([*pip, "-r", "requirements.txt"], cwd=root, env=env)
    return UserApp(root, venv, core_probe, core_help)


def test_the_wheel_holds_the_mapper_package_only_with_its_data_and_command(built):
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(f"mapper-{__version__}.dist-info/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == {"mapper", f"mapper-{__version__}.dist-info"}
    data = {"mapper/py.typed", "mapper/web/templates/console_job.html", "mapper/_version.py"}
    assert data <= set(names)
    assert "mapper = mapper.cli.main:main" in entry_points
    with tarfile.open(built.sdist) as sdist:
        tops = {Path(name).parts[1] for name in sdist.getnames() if len(Path(name).parts) > 1}
    assert "mapper" in tops and not tops & {"handlers", "tests", "examples", "bench", "main.py"}


def test_the_core_install_needs_no_flask_and_has_every_command(user_app):
    assert user_app.core_probe.returncode == 0, user_app.core_probe.stderr
    assert user_app.core_probe.stdout.strip() == "None"  # no flask until the web extra
    assert user_app.core_help.returncode == 0, user_app.core_help.stderr
    commands = user_app.core_help.stdout.partition("Commands:")[2]
    listed = re.findall(r"^  (\w[\w-]*)\s", commands, flags=re.M)
    assert sorted(listed) == sorted(cli_group.commands) and "run" in listed


def test_nothing_from_the_checkout_is_on_the_installed_path(user_app):
    probe = (
        "import importlib.metadata, json, sys, mapper, mapper.web, flask\n"
        "print(json.dumps({'path': sys.path, 'prefix': sys.prefix, 'base': sys.base_prefix,\n"
        "  'files': [mapper.__file__, mapper.web.__file__, flask.__file__],\n"
        "  'versions': [importlib.metadata.version('mapper'), mapper.__version__]}))"
    )
    # PYTHONPATH=. as the `mapper` command runs below: the app's own folder, outside the checkout.
    found = json.loads(_run(["python", "-c", probe], cwd=user_app.root,
                            env=user_app.env(PYTHONPATH=".")).stdout)  # fmt: skip

    assert not _inside_checkout(user_app.root)
    assert [p for p in found["path"] if _inside_checkout(p or user_app.root)] == []
    assert not _inside_checkout(found["prefix"]) and not _inside_checkout(found["base"])
    site = user_app.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert all(Path(f).is_relative_to(site / "site-packages") for f in found["files"]), found
    assert found["versions"] == [__version__, __version__]
    # What the wheel installed: the mapper package, its dist-info, the command.
    record = site / "site-packages" / f"mapper-{__version__}.dist-info" / "RECORD"
    installed = {line.split(",")[0] for line in record.read_text().splitlines()}
    tops = {name.split("/")[0] for name in installed if not name.startswith("../")}
    assert tops == {"mapper", f"mapper-{__version__}.dist-info"}
    assert {name for name in installed if name.startswith("../")} == {"../../../bin/mapper"}


def test_the_example_app_yaml_names_the_queue_its_queue_yaml_defines():
    app = yaml.safe_load((EXAMPLE / "app.yaml").read_text())
    env = {**app["env_variables"], "GAE_ENV": "standard", "GOOGLE_CLOUD_PROJECT": "p"}
    settings = Settings.from_env(env)
    queues = {q["name"]: q for q in yaml.safe_load((EXAMPLE / "queue.yaml").read_text())["queue"]}
    assert settings.queue is not None and settings.on_app_engine and settings.auth == "iap"
    mapper_queue = queues[settings.queue.rsplit("/", 1)[1]]
    assert "task_retry_limit" not in mapper_queue["retry_parameters"]
    assert len(queues) > 1  # the app's own queues stay: queue.yaml replaces them all on deploy


# -- mounting in the user's own app, in-process (the code the wheel ships) ------------


def test_init_app_puts_every_endpoint_under_its_prefix_and_tasks_follow(settings):
    app = flask.Flask("userapp")
    queued = settings.replace(auth="off", queue=DEFAULT_QUEUE, tasks_emulator_host="localhost:9")
    runtime = init_app(app, queued, url_prefix=PREFIX)
    try:
        rules = {rule.rule for rule in app.url_map.iter_rules()} - {"/static/<path:filename>"}
        assert rules and all(rule.startswith(f"{PREFIX}/") for rule in rules), rules
        task = runtime.dispatcher.build_task(SliceTask("j", 0, 0, 0))  # type: ignore[attr-defined]
        assert task.app_engine_http_request.relative_uri == f"{PREFIX}/tasks/slice"
        client = app.test_client()
        assert client.get(f"{PREFIX}/jobs/nope").status_code == 404
        assert client.get(f"{PREFIX}/jobs/nope").json["type"] == "NotFoundError"
        with pytest.raises(ConfigurationError, match="differs from the runtime"):
            init_app(flask.Flask("other"), runtime=runtime, url_prefix="/elsewhere")
        with pytest.raises(ConfigurationError, match="differs from the runtime"):
            init_app(flask.Flask("other"), queued, runtime)  # /_mapper, against /ops/mapper
    finally:
        runtime.close()


def test_a_url_prefix_that_is_not_a_plain_path_is_refused(settings):
    for bad in ("", "/", "mapper", "/mapper/", "/a b"):
        with pytest.raises(ConfigurationError, match="MAPPER_URL_PREFIX"):
            settings.replace(url_prefix=bad)


def _seed(user_app: UserApp, env: dict[str, str], namespace: str) -> None:
    seeded = user_app.run("python", "seed.py", str(SEEDED), "--namespace", namespace, env=env)
    assert seeded.returncode == 0, seeded.stderr


def _emails(datastore_client: Any) -> dict[str, bool]:
    return {e["email"]: e["active"] for e in datastore_client.query(kind="Customer").fetch()}


def _check_emails(datastore_client: Any) -> None:
    emails = _emails(datastore_client)
    assert len(emails) == SEEDED
    assert all(email == email.strip().lower() for email, active in emails.items() if active)
    untouched = [email for email, active in emails.items() if not active and email != email.lower()]
    assert len(untouched) == SEEDED // 15  # inactive customers are not the mapper's


def test_the_mapper_command_runs_a_job_of_the_example_app(
    user_app, emulator, namespace, datastore_client
):
    # No PYTHONPATH: the `mapper` command imports the app's modules from the folder it
    # runs in (its --path, default "."), as `python -m mapper` would.
    env = user_app.env(**emulator.env, MAPPER_STATE_NAMESPACE=namespace)
    _seed(user_app, env, namespace)

    ran = user_app.run("mapper", "run", "mappers:NormalizeEmails", "--shards", "2", "--batch-size",
                       "25", "--namespace", namespace, "--id", "cli", env=env)  # fmt: skip

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "job cli succeeded: processed=96, put=32, deleted=0, normalized=32" in ran.stdout
    shown = user_app.run("mapper", "status", "cli", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["counters"] == COUNTERS
    _check_emails(datastore_client)


# -- the example's Flask app, served by its app.yaml entrypoint -----------------------


@pytest.fixture(scope="module")
def app_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def tasks_emulator(app_port: int) -> Iterator[TasksEmulator]:
    with start_tasks_emulator(queue=DEFAULT_QUEUE, target_port=app_port) as running:
        yield running


class Served:
    """The example's app.yaml entrypoint (gunicorn main:app), from its venv, on loopback."""

    def __init__(self, user_app: UserApp, env: dict[str, str], port: int, log: Path):
        entrypoint = yaml.safe_load((user_app.root / "app.yaml").read_text())["entrypoint"]
        command = entrypoint.replace("-b :$PORT", f"-b 127.0.0.1:{port}")
        assert command != entrypoint and command.startswith("gunicorn "), entrypoint
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["sh", "-c", f"exec {command}"],
                cwd=user_app.root,
                env={**env, "GUNICORN_CMD_ARGS": "--access-logfile -"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if listening("127.0.0.1", self.port):
                return
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not listen: {self.log.read_text()}")

    def requests_seen(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request, from gunicorn's access log."""
        found = re.findall(r'"(\w+) (\S+) HTTP/[\d.]+" (\d{3})', self.log.read_text())
        return [(method, path, int(code)) for method, path, code in found]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn's graceful shutdown stops its worker
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture
def served(user_app, emulator, namespace, tasks_emulator, app_port, tmp_path) -> Iterator[Served]:
    env = user_app.env(
        **emulator.env,
        MAPPER_QUEUE=tasks_emulator.queue,
        CLOUD_TASKS_EMULATOR_HOST=tasks_emulator.host,
        MAPPER_AUTH="off",  # the tasks emulator sends no credentials (see tasks_emulator.py)
        MAPPER_URL_PREFIX=PREFIX,
        MAPPER_STATE_NAMESPACE=namespace,
        MAPPER_SLICE_SECONDS="5",
        MAPPER_LEASE_SECONDS="10",
    )
    _seed(user_app, env, namespace)
    server = Served(user_app, env, app_port, tmp_path / "gunicorn.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium, as in test_status_page_browser.py."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium is missing: apt-get install chromium chromium-driver (make test)")
    profile = tempfile.mkdtemp(prefix="mapper-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(served: Served, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """The job's final status; fails at once if a task was refused or not found."""
    deadline = time.monotonic() + timeout
    while (status := requests.get(f"{served.url}{PREFIX}/jobs/{job_id}", timeout=30).json())[
        "status"
    ] not in ("succeeded", "failed", "aborted"):
        refused = [seen for seen in served.requests_seen() if seen[2] in (401, 403, 404)]
        assert not refused and time.monotonic() < deadline, (status, refused)
        time.sleep(0.2)
    return status


def test_the_example_app_runs_a_job_posted_once_through_the_tasks_emulator_and_shows_it(
    served, namespace, datastore_client, browser
):
    served.wait_listening()
    own = requests.get(f"{served.url}/", timeout=30)
    assert own.status_code == 200 and isinstance(own.json()["customers"], int)  # the app's view
    body = {"mapper": "mappers:NormalizeEmails", "namespace": namespace, "shards": 2,
            "batch_size": 25, "id": "web"}  # fmt: skip

    reply = requests.post(f"{served.url}{PREFIX}/jobs", json=body, timeout=30)

    assert reply.status_code == 200 and reply.json() == {"id": "web"}, reply.text
    status = _wait(served, "web")
    assert status["status"] == "succeeded", status
    assert status["counters"] == COUNTERS
    _check_emails(datastore_client)
    # Every slice and the finalize came from the queue, to the prefix the app mounts.
    seen = served.requests_seen()
    slices = [code for method, path, code in seen if path == f"{PREFIX}/tasks/slice"]
    finals = [code for method, path, code in seen if path == f"{PREFIX}/tasks/finalize"]
    assert len(slices) >= len(status["shards"]) and set(slices) == {200}, seen
    assert finals == [200], seen
    assert requests.get(f"{served.url}/_mapper/", timeout=30).status_code == 404

    browser.get(f"{served.url}{PREFIX}/")

    assert browser.title == "mapper jobs"
    job = browser.find_element(By.ID, "job-web")
    assert job.find_element(By.CSS_SELECTOR, "td.status").text == "succeeded"
    assert "normalized=32" in job.find_element(By.CSS_SELECTOR, "td.counters").text
    # The shards are on the job's own page (the console), linked from the list.
    job.find_element(By.LINK_TEXT, "web").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.shard")
    assert len(rows) == len(status["shards"]) and all("done" in row.text for row in rows)
