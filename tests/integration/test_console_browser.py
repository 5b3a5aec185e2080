"""The operator console in real headless Chromium: a job's page moves while it runs, pauses,
resumes and aborts from its buttons, and an import is one entry with its stages.

Set ``MAPPER_CONSOLE_SCREENSHOTS=docs`` to keep the screenshots this run takes
(docs/console-list.png, docs/console-job.png); else they go to a temporary folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

from examples import blog as sites
from mapper.transfer.export import ExportSpec, start_export
from tests.support.browser import chromium, serving_the_app

SLOW = "tests.support.mappers:SlowTouch"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium(1200, 1000) as driver:
        yield driver


@pytest.fixture
def served(settings) -> Iterator[str]:
    with serving_the_app(settings) as url:
        yield url


@pytest.fixture
def shots(tmp_path) -> str:
    return os.environ.get("MAPPER_CONSOLE_SCREENSHOTS") or str(tmp_path)


def wait_for(what: str, check: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    last: WebDriverException | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
        except WebDriverException as error:
            # The page is between two loads, or the live script replaced the element
            # between finding it and reading it (Stale..., or Chromium's "Node with
            # given id does not belong to the document", which CI met once).
            found, last = None, error
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout}s for {what}" + (f" (last: {last})" if last else ""))


def api(url: str, job_id: str) -> dict:
    return requests.get(f"{url}/_mapper/jobs/{job_id}", timeout=30).json()


def start(url: str, namespace: str, job_id: str, sleep: float) -> None:
    body = {"mapper": SLOW, "namespace": namespace, "id": job_id, "shards": 2,
            "batch_size": 10, "params": {"sleep": sleep}}  # fmt: skip
    requests.post(f"{url}/_mapper/jobs", json=body, timeout=30).raise_for_status()


def bars(browser) -> list[int]:
    return [
        int(p.get_attribute("value"))
        for p in browser.find_elements(By.CSS_SELECTOR, "tr.shard progress")
    ]


def processed(browser) -> int:
    cells = browser.find_elements(By.CSS_SELECTOR, "tr.shard [data-f=processed]")
    return sum(int(c.text) for c in cells)


def chart_points(browser) -> int:
    lines = browser.find_elements(By.CSS_SELECTOR, "#chart-box polyline")
    return int(lines[0].get_attribute("data-points")) if lines else 0


def same_page(browser) -> bool:
    """True while the page is the one the test marked (it was not reloaded)."""
    return browser.execute_script("return window.__mark === 'kept'") is True


def test_a_job_page_moves_live_and_pauses_resumes_and_aborts_from_its_buttons(
    browser, served, namespace, seed, shots
):
    seed(400)
    start(served, namespace, "watched", sleep=0.06)
    browser.get(f"{served}/_mapper/console/watched")
    assert browser.title == "mapper job watched"
    browser.execute_script("window.__mark = 'kept'")

    # The bars and the chart move while the page stays the same page (the script polls).
    first_done, first_points = processed(browser), chart_points(browser)
    wait_for("the shards' counts to move", lambda: processed(browser) >= first_done + 40)
    if api(served, "watched")["total"] is not None:  # a store with a COUNT query: bars move too
        wait_for("the progress bars to move", lambda: 0 < sum(bars(browser)) < 2000)
    wait_for("the chart to grow", lambda: chart_points(browser) >= max(3, first_points + 2))
    assert same_page(browser)
    assert "/s" in browser.find_element(By.CSS_SELECTOR, '[data-field="rate_now"]').text
    browser.save_screenshot(os.path.join(shots, "console-job.png"))

    # Pause with the button: the job is paused at once; the shards stop at their next batch,
    # which the page shows without being reloaded.
    browser.find_element(By.ID, "pause").click()
    wait_for("the paused page", lambda: browser.find_element(By.ID, "status").text == "paused")
    assert "Paused" in browser.find_element(By.ID, "notice").text
    assert not browser.find_element(By.ID, "pause").is_displayed()
    browser.execute_script("window.__mark = 'kept'")
    wait_for(
        "every shard to stop",
        lambda: all(
            c.text in ("paused", "done")
            for c in browser.find_elements(By.CSS_SELECTOR, "tr.shard [data-f=status]")
        ),
    )
    assert same_page(browser) and api(served, "watched")["status"] == "paused"
    stopped = api(served, "watched")["counters"]["processed"]
    assert stopped < 400

    # Throttle it from its form: the page says so and the job keeps the new budget.
    field = browser.find_element(By.ID, "max-rate")
    field.clear()
    field.send_keys("1000")
    browser.find_element(By.ID, "throttle").click()
    wait_for(
        "the throttled notice", lambda: "Throttled" in browser.find_element(By.ID, "notice").text
    )
    assert api(served, "watched")["max_rate"] == 1000

    # Resume: it goes on from the checkpoints and succeeds; the page follows on its own.
    browser.find_element(By.ID, "resume").click()
    wait_for("running again", lambda: api(served, "watched")["status"] in ("running", "succeeded"))
    wait_for("success", lambda: browser.find_element(By.ID, "status").text == "succeeded", 90)
    assert api(served, "watched")["counters"]["processed"] == 400
    assert all(b == 1000 for b in bars(browser))
    assert not browser.find_elements(By.CSS_SELECTOR, "form[data-action]:not([hidden])")

    # Abort another: the button asks first; the job is aborted only when confirmed.
    start(served, namespace, "stopped", sleep=0.05)
    browser.get(f"{served}/_mapper/console/stopped")
    browser.find_element(By.ID, "abort").click()
    # The confirmation is a new page: wait for it (the job page's heading goes stale meanwhile).
    wait_for(
        "the confirmation page",
        lambda: "Abort job stopped?" in browser.find_element(By.TAG_NAME, "h1").text,
    )
    assert api(served, "stopped")["status"] == "running"
    browser.find_element(By.ID, "confirm-abort").click()
    wait_for("aborted", lambda: browser.find_element(By.ID, "status").text == "aborted")
    assert api(served, "stopped")["status"] == "aborted"

    # A stale page: its (now hidden) pause form posted for the aborted job is refused, and
    # the page says why.
    browser.execute_script("document.querySelector('form[data-action=pause]').submit()")
    wait_for("the refusal", lambda: browser.find_elements(By.CSS_SELECTOR, "#notice.refused"))
    assert "is aborted; cannot make it paused" in browser.find_element(By.ID, "notice").text
    assert api(served, "stopped")["status"] == "aborted"

    browser.get(f"{served}/_mapper/")
    rows = {r.get_attribute("id"): r for r in browser.find_elements(By.CSS_SELECTOR, "tr.entry")}
    assert list(rows)[:2] == ["job-stopped", "job-watched"]  # newest first
    assert rows["job-watched"].find_element(By.CSS_SELECTOR, "td.status").text == "succeeded"
    browser.find_element(By.ID, "filter-status").send_keys("aborted")
    browser.find_element(By.CSS_SELECTOR, "form.filter button").click()
    # The filtered list is a new page: wait for it (the old one's rows go stale meanwhile).
    wait_for("the filtered list", lambda: "status=aborted" in browser.current_url)
    listed = [r.get_attribute("id") for r in browser.find_elements(By.CSS_SELECTOR, "tr.entry")]
    assert listed == ["job-stopped"]
    browser.get(f"{served}/_mapper/")
    browser.save_screenshot(os.path.join(shots, "console-list.png"))


def test_a_three_stage_import_is_one_entry_linking_to_its_stages(
    browser, served, runtime, namespace, tmp_path
):
    source = namespace + "src"
    with runtime.context(source):
        sites.seed_site("B", ("python", "rust"))
    out = str(tmp_path / "dump")
    kinds = ["Activity", "Author", "Comment", "Config", "Post", "Tag"]
    spec = ExportSpec(out=out, kinds=kinds, namespaces=[source], batch_size=3, shards=2)
    assert start_export(runtime, spec).wait(timeout=120).status == "succeeded"
    body = {"mapper": "import", "namespace": namespace, "id": "merge-1", "shards": 2,
            "params": {"source": out, "mode": "remap"}}  # fmt: skip
    requests.post(f"{served}/_mapper/jobs", json=body, timeout=30).raise_for_status()
    wait_for("the import", lambda: api(served, "merge-1")["status"] == "succeeded", 120)
    stages = [s["stage"] for s in api(served, "merge-1")["stages"]]
    assert len(stages) == 3, stages

    browser.get(f"{served}/_mapper/")
    entry = browser.find_element(By.ID, "job-merge-1")
    assert entry.find_element(By.CSS_SELECTOR, "td.mapper").text == "import (remap)"
    assert entry.find_element(By.CSS_SELECTOR, "td.status").text == "succeeded"
    ids = [r.get_attribute("id") for r in browser.find_elements(By.CSS_SELECTOR, "tr.entry")]
    assert not [i for i in ids if i.startswith("job-merge-1-")]  # its stage jobs are not listed
    links = browser.find_elements(By.CSS_SELECTOR, "#job-merge-1 + tr.stages a.stage")
    assert [a.get_attribute("href").rsplit("/", 1)[1] for a in links] == [
        f"merge-1-{i}" for i in range(3)
    ]
    # The export that made the dump is one entry too, with a job per kind.
    exports = browser.find_elements(By.CSS_SELECTOR, "tr.entry.export")
    assert len(exports) == 1 and len(ids) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.export + tr.stages a.stage")) == 6

    browser.get(f"{served}/_mapper/console/merge-1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#stages tr.stage")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == stages
    rows[2].find_element(By.TAG_NAME, "a").click()
    wait_for("the stage's page", lambda: browser.find_element(By.ID, "job-id").text == "merge-1-2")
    assert browser.find_element(By.ID, "status").text == "succeeded"


def test_a_job_over_many_namespaces_shows_them_done_as_it_goes(browser, served, namespace, runtime):
    from google.cloud import ndb

    from tests.support.mappers import Person

    tenants = [f"{namespace}-{i}" for i in range(3)]
    with runtime.context():
        for tenant in tenants:
            ndb.put_multi([Person(key=ndb.Key(Person, j + 1, namespace=tenant)) for j in range(30)])
    body = {"mapper": SLOW, "namespaces": tenants, "id": "tenants", "shards": 1,
            "batch_size": 10, "params": {"sleep": 0.04}}  # fmt: skip
    requests.post(f"{served}/_mapper/jobs", json=body, timeout=30).raise_for_status()
    browser.get(f"{served}/_mapper/console/tenants")
    browser.execute_script("window.__mark = 'kept'")

    def done() -> int:
        return int(browser.find_element(By.CSS_SELECTOR, '[data-field="namespaces_done"]').text)

    facts = browser.find_element(By.CSS_SELECTOR, "table.facts").text
    assert "/3 done (3 listed at start)" in facts
    wait_for("a namespace read through", lambda: 1 <= done() < 3 and same_page(browser))
    wait_for("success", lambda: browser.find_element(By.ID, "status").text == "succeeded", 90)
    wait_for("every namespace done", lambda: done() == 3)
