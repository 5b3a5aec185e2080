"""app.yaml and queue.yaml agree with each other and with the settings they configure."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mapper.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_app_yaml_env_gives_valid_settings_on_app_engine() -> None:
    env = {**load("app.yaml")["env_variables"], "GAE_ENV": "standard", "GOOGLE_CLOUD_PROJECT": "p"}
    settings = Settings.from_env(env)
    assert settings.on_app_engine
    assert settings.auth == "iap"  # never "off" on App Engine


def test_gunicorn_outlives_the_slice_time_box() -> None:
    app = load("app.yaml")
    timeout = int(re.search(r"--timeout (\d+)", app["entrypoint"])[1])
    slice_seconds = float(app["env_variables"]["MAPPER_SLICE_SECONDS"])
    assert "main:app" in app["entrypoint"]
    assert slice_seconds + 60 <= timeout <= 600 + 60  # App Engine's 10-minute request limit


def test_queue_yaml_defines_the_queue_app_yaml_points_at() -> None:
    queue_id = load("app.yaml")["env_variables"]["MAPPER_QUEUE"].rsplit("/", 1)[1]
    (queue,) = load("queue.yaml")["queue"]
    assert queue["name"] == queue_id
    # The app bounds a failing slice itself; the queue must not give up first.
    assert "task_retry_limit" not in queue["retry_parameters"]
