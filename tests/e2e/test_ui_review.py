"""Review of the web UI: flows the API offers, failures that pass, focus, and polling that stops.

Uses the browser, site and visitor of test_ui (real Chromium, real SWA emulator, devhost, Azurite).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests

from devhost.swa import SwaEmulator
from tests.e2e.conftest import Devhost
from tests.e2e.test_ui import browser, site, visitor

pytestmark = pytest.mark.browser
__all__ = ["browser", "site"]  # fixtures, shared with test_ui

SCHEMA = {
    "fields": [{"name": "code", "type": "string"}, {"name": "n", "type": "integer"}],
    "primaryKey": "code",
}


def dataset_with_rows(devhost: Devhost, user: str, rows: list[tuple[str, str]], name: str = "codes") -> str:
    api = devhost.api(user)
    dataset_id = api.create_dataset(SCHEMA, name=name)
    body = "code,n\n" + "".join(f"{code},{n}\n" for code, n in rows)
    upload_id = api.profiled(body.encode())
    job_id = api.start_import(dataset_id, upload_id, mode="insert", autoApply=True)
    assert api.wait_for_import(job_id)["status"] == "completed"
    return dataset_id


def test_the_import_page_rides_out_a_passing_failure_while_it_polls(
    browser: Any, site: SwaEmulator, devhost: Devhost
) -> None:
    api = devhost.api("tess")
    dataset_id = api.create_dataset(SCHEMA, name="flaky")
    upload_id = api.profiled(b"code,n\na,1\nb,x\n")
    job_id = api.start_import(dataset_id, upload_id, mode="insert")
    api.wait_for_import(job_id, ("awaiting_review",))
    calls: list[str] = []

    def flaky(route: Any) -> None:
        calls.append(route.request.url)
        if len(calls) == 2:  # one poll meets a service briefly unwell
            problem = {"title": "Service Unavailable", "status": 503, "detail": "Try again."}
            route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(problem))
        else:
            route.continue_()

    with visitor(browser, site, "tess") as page:
        page.route(re.compile(rf"/api/imports/{job_id}$"), flaky)
        page.goto(f"{site.url}/imports/{job_id}")
        page.get_by_role("heading", name="Review").wait_for()
        deadline = 40
        while len(calls) < 4 and deadline:
            page.wait_for_timeout(500)
            deadline -= 1
        assert len(calls) >= 4, calls
        assert page.get_by_text("This page could not be shown").count() == 0
        assert page.get_by_role("heading", name="Review").is_visible()


def test_a_row_is_found_by_its_key(browser: Any, site: SwaEmulator, devhost: Devhost) -> None:
    dataset_id = dataset_with_rows(
        devhost, "kim", [("a/b.c", "1"), ("plain", "2"), ("..", "3"), ("50%?#", "4")]
    )
    with visitor(browser, site, "kim") as page:
        page.goto(f"{site.url}/datasets/{dataset_id}")
        page.get_by_role("region", name="Rows, page 1").wait_for()
        found = page.locator("#found-row")
        for key, n in (("a/b.c", "1"), ("50%?#", "4"), ("plain", "2")):
            page.get_by_label("Key", exact=True).fill(key)
            page.get_by_role("button", name="Find row").click()
            found.locator("dd").nth(2).filter(has_text=re.compile(f"^{n}$")).wait_for(timeout=15_000)
            assert found.locator("dd").first.inner_text() == key
        page.get_by_label("Key", exact=True).fill("nobody")
        page.get_by_role("button", name="Find row").click()
        found.get_by_role("alert").wait_for(timeout=15_000)
        assert "nobody" in found.inner_text()
        # A browser turns a path segment ".." into "go up", so that key is not looked up (wrongly).
        page.get_by_label("Key", exact=True).fill("..")
        page.get_by_role("button", name="Find row").click()
        found.get_by_text("cannot be looked up here").wait_for(timeout=15_000)


def test_the_whole_import_history_can_be_seen(browser: Any, site: SwaEmulator, devhost: Devhost) -> None:
    api = devhost.api("hal")
    dataset_id = api.create_dataset(SCHEMA, name="history")
    for number in range(2):
        upload_id = api.profiled(f"code,n\nk{number},{number}\n".encode(), file_name=f"part{number}.csv")
        job_id = api.start_import(dataset_id, upload_id, mode="upsert", autoApply=True)
        api.wait_for_import(job_id)
    with visitor(browser, site, "hal") as page:
        # One import a page, so two imports need a second page.
        page.route(
            re.compile(rf"/api/datasets/{dataset_id}/imports\?"),
            lambda route: route.continue_(url=route.request.url.replace("limit=20", "limit=1")),
        )
        page.goto(f"{site.url}/datasets/{dataset_id}")
        history = page.get_by_role("region", name="Import history")
        history.get_by_text("part1.csv").wait_for()
        page.get_by_role("button", name="Show more imports").click()
        history.get_by_text("part0.csv").wait_for()
        page.get_by_role("button", name="Show more imports").wait_for(state="hidden", timeout=15_000)
        assert history.locator("tbody tr").count() == 2


def test_paging_rows_with_the_keyboard_keeps_the_focus(
    browser: Any, site: SwaEmulator, devhost: Devhost
) -> None:
    dataset_id = dataset_with_rows(devhost, "kit", [(f"r{n:03d}", str(n)) for n in range(30)])
    with visitor(browser, site, "kit") as page:
        page.goto(f"{site.url}/datasets/{dataset_id}")
        page.get_by_role("region", name="Rows, page 1").wait_for()
        page.get_by_role("button", name="Next").focus()
        page.keyboard.press("Enter")
        page.get_by_role("region", name="Rows, page 2").wait_for()
        page.wait_for_timeout(200)
        # The last page: Next is disabled, and the focus goes to the page of rows, not to <body>.
        assert page.evaluate("document.activeElement.tagName") != "BODY"
        focused = page.evaluate(
            "[document.activeElement.tagName, document.activeElement.getAttribute('aria-label')]"
        )
        assert focused == ["DIV", "Rows, page 2"]


def test_leaving_the_import_page_before_it_loads_keeps_the_new_page(
    browser: Any, site: SwaEmulator, devhost: Devhost
) -> None:
    dataset_id = devhost.api("lee").create_dataset(SCHEMA, name="slow")
    with visitor(browser, site, "lee") as page:
        # The dataset answers slowly (1.5 s), as on a bad connection.
        page.add_init_script(
            """(() => {
              const plain = window.fetch;
              window.fetch = (input, init) => /\\/api\\/datasets\\/[0-9a-z]{26}$/.test(String(input))
                ? new Promise((resolve) => setTimeout(resolve, 1500)).then(() => plain(input, init))
                : plain(input, init);
            })();"""
        )
        page.goto(f"{site.url}/datasets/{dataset_id}/import")
        page.locator("#nav").get_by_role("link", name="My datasets").click()
        page.get_by_role("heading", name="My datasets").wait_for()
        page.wait_for_timeout(2500)
        assert page.get_by_role("heading", name="My datasets").is_visible()
        assert page.get_by_text("Choose a CSV file").count() == 0


def test_polling_a_profile_stops_when_the_visitor_leaves(browser: Any, site: SwaEmulator) -> None:
    polls: list[str] = []

    def never_ready(route: Any) -> None:
        if route.request.method != "GET":
            route.continue_()
            return
        polls.append(route.request.url)
        upload_id = route.request.url.rsplit("/", 1)[1]
        route.fulfill(
            status=200,
            content_type="application/json",
            body=json.dumps({"id": upload_id, "status": "profiling"}),
        )

    with visitor(browser, site, "pat") as page:
        page.route(re.compile(r"/api/uploads/[0-9a-z]{26}$"), never_ready)
        page.goto(f"{site.url}/datasets/new")
        page.get_by_role("heading", name="New dataset").wait_for()
        page.get_by_label("CSV file").set_input_files(
            files=[{"name": "slow.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"}]
        )
        page.get_by_text("Reading the file").wait_for()
        while len(polls) < 2:
            page.wait_for_timeout(200)
        page.locator("#nav").get_by_role("link", name="My datasets").click()
        page.get_by_role("heading", name="My datasets").wait_for()
        left = len(polls)
        page.wait_for_timeout(3000)
        assert len(polls) <= left + 1, f"{len(polls) - left} polls after leaving"


def test_the_policy_allows_no_inline_html_sinks(site: SwaEmulator) -> None:
    policy = requests.get(site.url + "/", timeout=30).headers["Content-Security-Policy"]
    assert "require-trusted-types-for 'script'" in policy
    assert "data:" not in policy


def test_show_more_is_hidden_when_there_is_no_more(browser: Any, site: SwaEmulator, devhost: Devhost) -> None:
    devhost.api("sol").create_dataset(SCHEMA, name="only one")
    with visitor(browser, site, "sol") as page:
        page.goto(f"{site.url}/datasets")
        page.get_by_role("link", name="only one").wait_for()
        page.wait_for_timeout(300)
        # The button has the hidden attribute; .button's display must not show it anyway.
        assert page.get_by_role("button", name="Show more").is_hidden()
