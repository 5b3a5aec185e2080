"""The status page, loaded in real headless Chromium (Debian's chromium + chromedriver)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.browser import chromium, serving_the_app


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def served(settings) -> Iterator[str]:
    with serving_the_app(settings) as url:
        yield url


def run_job(url: str, body: dict) -> None:
    requests.post(f"{url}/_mapper/jobs", json=body, timeout=30).raise_for_status()
    deadline = time.monotonic() + 60
    while requests.get(f"{url}/_mapper/jobs/{body['id']}", timeout=30).json()["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_status_page_shows_jobs_shards_counters_and_errors(browser, served, namespace, seed):
    seed(120)
    run_job(served, {"mapper": "tests.support.mappers:TouchPeople", "namespace": namespace,
                     "shards": 2, "id": "page-ok"})  # fmt: skip
    run_job(served, {"mapper": "tests.support.mappers:Poison", "namespace": namespace,
                     "params": {"poison": "p00042"}, "id": "page-bad"})  # fmt: skip

    browser.get(f"{served}/_mapper/")

    assert browser.title == "mapper jobs"
    ok = browser.find_element(By.ID, "job-page-ok")
    assert ok.find_element(By.CSS_SELECTOR, "td.status").text == "succeeded"
    assert "processed=120" in ok.find_element(By.CSS_SELECTOR, "td.counters").text
    progress = ok.find_element(By.TAG_NAME, "progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")

    bad = browser.find_element(By.ID, "job-page-bad")
    assert bad.find_element(By.CSS_SELECTOR, "td.status").text == "failed"
    error = browser.find_element(By.ID, "error-page-bad").text
    assert "cannot map p00042" in error and "Key('Person', " in error and namespace in error
    # The failed job is drawn in the error colour, the succeeded one in green.
    red = bad.find_element(By.CSS_SELECTOR, "td.status").value_of_css_property("color")
    green = ok.find_element(By.CSS_SELECTOR, "td.status").value_of_css_property("color")
    assert red != green
    # Nothing is running: the page does not keep reloading itself.
    assert not browser.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]")

    # Each job's page lists its shards, each done.
    ok.find_element(By.LINK_TEXT, "page-ok").click()
    shards = browser.find_elements(By.CSS_SELECTOR, "tr.shard")
    assert len(shards) in (1, 2) and all("done" in row.text for row in shards)


def test_status_page_says_when_there_are_no_jobs(browser, served):
    browser.get(f"{served}/_mapper/")
    assert browser.find_element(By.ID, "empty").text == "No jobs yet."
