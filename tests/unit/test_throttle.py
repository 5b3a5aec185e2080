"""The throttle's rules on a fake clock: ramp, pacing, back-off; bad rates refused."""

from __future__ import annotations

import random

import pytest
from google.api_core import exceptions as core_exceptions

from mapper.engine.spec import JobSpec
from mapper.engine.throttle import Backoff, Pacer, RampUp, allowed_rate
from mapper.errors import ConfigurationError, InvalidJobError
from mapper.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_ramp_starts_at_500_and_grows_half_every_5_minutes():
    ramp = RampUp()
    assert [ramp.rate_at(t) for t in (0, 299, 300, 600, 900)] == [500, 500, 750, 1125, 1687.5]


def test_the_allowed_rate_is_the_lower_of_the_limit_and_the_ramp():
    ramp = RampUp(100, 1.5, 5)
    assert allowed_rate(None, None, 100) is None
    assert allowed_rate(200, None, 0) == 200
    assert allowed_rate(200, ramp, 0) == 100
    assert allowed_rate(200, ramp, 10) == 200  # 225 by the ramp, capped


def test_a_pacer_never_lets_more_than_the_rate_plus_one_batch_into_a_window():
    clock = Clock()
    pacer = Pacer(clock)
    sent = []
    for _ in range(200):
        clock.now += pacer.reserve(20, 100.0)
        sent.append(clock.now)
        clock.now += random.Random(len(sent)).uniform(0, 0.3)  # work of uneven length
    for start in sent:
        in_window = sum(1 for t in sent if start <= t < start + 5) * 20
        assert in_window <= 5 * 100 + 20


def test_a_late_batch_earns_no_credit_for_a_burst():
    clock = Clock()
    pacer = Pacer(clock)
    assert pacer.reserve(10, 10.0) == 0
    clock.now = 30.0  # a long stall
    assert pacer.reserve(10, 10.0) == 0
    assert pacer.reserve(10, 10.0) == pytest.approx(1.0)


def test_backoff_rejects_while_most_requests_fail_and_recovers_a_window_later():
    clock = Clock()
    backoff = Backoff(window=2.0, clock=clock, rng=random.Random(1))
    for i in range(40):
        clock.now = i * 0.05
        backoff.observe(core_exceptions.TooManyRequests("x") if i % 4 else None)
    assert backoff.reject_probability() > 0.6
    assert sum(backoff.reject() for _ in range(100)) > 50
    clock.now += 2.5
    backoff.observe(None)
    assert backoff.reject_probability() == 0
    assert not any(backoff.reject() for _ in range(100))


def test_backoff_ignores_errors_that_are_not_pushback():
    backoff = Backoff(window=10.0, clock=Clock())
    for _ in range(10):
        backoff.observe(core_exceptions.InvalidArgument("bad"))
    assert backoff.reject_probability() == 0


@pytest.mark.parametrize("rate", [0, -5, float("nan"), float("inf"), True, "200"])
def test_a_bad_max_rate_is_refused_naming_it(rate):
    with pytest.raises(InvalidJobError, match="max_rate"):
        JobSpec(mapper="m:C", max_rate=rate).validate()


def test_ramp_up_is_on_in_production_and_off_against_an_emulator_unless_set():
    assert Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p"}).ramp_up_default
    emulator = {"GOOGLE_CLOUD_PROJECT": "p", "DATASTORE_EMULATOR_HOST": "localhost:1"}
    assert not Settings.from_env(emulator).ramp_up_default
    assert Settings.from_env({**emulator, "MAPPER_RAMP_UP": "on"}).ramp_up_default


@pytest.mark.parametrize(
    "name,value",
    [
        ("MAPPER_RAMP_START_RATE", "0"),
        ("MAPPER_RAMP_GROWTH", "0.5"),
        ("MAPPER_RAMP_STEP_SECONDS", "-1"),
        ("MAPPER_RAMP_UP", "maybe"),
    ],
)
def test_bad_throttle_settings_are_refused_naming_them(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", name: value})
