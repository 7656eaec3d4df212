"""The web UI in real headless Chromium, through the real SWA emulator, the devhost and Azurite.

Visitors are signed in by the `StaticWebAppsAuthCookie` cookie (the emulator's login form needs a CDN).
Screenshots of every step, at desktop size and 360 px wide, land in test-output/ui/.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

from devhost.azurite import Azurite
from devhost.stack import allow_browser_uploads
from devhost.swa import SwaEmulator
from tests.e2e.conftest import OUTPUT_DIR, Devhost, launch_chromium

pytestmark = pytest.mark.browser
SHOTS = OUTPUT_DIR / "ui"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 780}
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def site(devhost: Devhost, azurite: Azurite) -> Iterator[SwaEmulator]:
    OUTPUT_DIR.mkdir(exist_ok=True)
    emulator = SwaEmulator(
        api_url=devhost.url,
        log_file=OUTPUT_DIR / "swa-ui.log",
        blob_origin=f"http://127.0.0.1:{azurite.blob_port}",
    )
    with emulator:
        allow_browser_uploads(azurite.connection_string, emulator.port)
        yield emulator


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def cookie(user_id: str, roles: tuple[str, ...] = ()) -> str:
    principal = {
        "identityProvider": "aad",
        "userId": user_id,
        "userDetails": f"{user_id}@example.com",
        "userRoles": ["anonymous", "authenticated", *roles],
    }
    return base64.b64encode(json.dumps(principal).encode()).decode()


@contextlib.contextmanager
def visitor(
    browser: Any, site: SwaEmulator, user_id: str | None, roles: tuple[str, ...] = ()
) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    if user_id:
        context.add_cookies(
            [{"name": "StaticWebAppsAuthCookie", "value": cookie(user_id, roles), "url": site.url}]
        )
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    # Script errors and Content-Security-Policy violations fail the test: the UI must run clean. (The
    # emulator's own sign-in page loads jQuery from a CDN, which fails offline: it is not ours.)
    faults: list[str] = []

    def fault(text: str) -> None:
        if "/.auth/" not in page.url:
            faults.append(text)

    page.on("pageerror", lambda error: fault(f"script error: {error}"))
    page.on(
        "console", lambda message: fault(message.text) if "Content Security Policy" in message.text else None
    )
    try:
        yield page
        assert faults == []
    finally:
        context.close()


def snap(page: Any, name: str) -> None:
    """Save the page at desktop size and at 360 px wide."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(150)
    page.screenshot(path=str(SHOTS / f"{name}-360.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def journey_csv(rows: int, bad: dict[int, tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ID", "Full name", "Email", "Age"])
    for number in range(1, rows + 1):
        row = {
            "ID": str(number),
            "Full name": f"Person {number}",
            "Email": f"p{number}@example.com",
            "Age": str(18 + number % 60),
        }
        column, text = bad.get(number, ("", ""))
        if column:
            row[column] = text
        writer.writerow(row.values())
    return out.getvalue().encode()


BAD = {17: ("Age", "old"), 256: ("Email", "nobody"), 4_000: ("Age", "-3"), 9_999: ("Full name", "")}


def test_the_whole_import_journey(browser: Any, site: SwaEmulator, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_bytes(journey_csv(10_000, BAD))
    with visitor(browser, site, "jo") as page:
        page.goto(site.url + "/datasets/new")
        page.get_by_role("heading", name="New dataset").wait_for()
        page.get_by_label("Name", exact=True).first.fill("People")
        first = page.locator("fieldset.schema-field").nth(0)
        assert first.locator("[data-part=name]").input_value() == "id"
        for name, kind, extra in (
            ("name", "string", "required"),
            ("email", "string", "email"),
            ("age", "integer", "range"),
        ):
            page.get_by_role("button", name="Add a field").click()
            box = page.locator("fieldset.schema-field").last
            box.locator("[data-part=name]").fill(name)
            box.locator("[data-part=type]").select_option(kind)
            if extra == "required":
                box.locator("[data-part=required]").check()
            elif extra == "email":
                box.locator("[data-part=format]").fill("email")
            else:
                box.locator("summary").click()
                box.locator("[data-part=minimum]").fill("0")
                box.locator("[data-part=maximum]").fill("150")
        snap(page, "01-new-dataset")
        page.get_by_role("button", name="Create dataset", exact=True).click()
        page.get_by_role("heading", name="People").wait_for()
        dataset_url = page.url
        snap(page, "02-dataset-empty")

        page.get_by_role("link", name="Import a file").click()
        page.get_by_text("Choose a CSV file").wait_for()
        snap(page, "03-pick-file")
        page.set_input_files("#file", str(source))
        page.get_by_role("heading", name="Map columns to fields").wait_for()
        assert re.search(r"/import/[0-9a-z]{26}$", page.url)
        for field_name, column in (("id", "ID"), ("name", ""), ("email", "Email"), ("age", "Age")):
            assert page.locator(f"select[data-field='{field_name}']").input_value() == column
        # "Full name" does not match "name": the required field is flagged before anything starts.
        page.locator("#mapping-warnings").get_by_text("“name” is required but no column feeds it.").wait_for()
        assert page.get_by_role("button", name="Start import").is_disabled()
        page.locator("select[data-field='name']").select_option("Full name")
        assert page.get_by_role("button", name="Start import").is_enabled()
        snap(page, "04-profile-and-mapping")
        page.reload()  # reloading returns to the same step
        page.get_by_role("heading", name="Map columns to fields").wait_for()
        page.locator("select[data-field='name']").select_option("Full name")

        page.get_by_role("button", name="Start import").click()
        page.wait_for_url(re.compile(r"/imports/[0-9a-z]{26}$"))
        page.locator("#import-progress").wait_for()
        snap(page, "05-progress")
        page.get_by_role("heading", name="Review").wait_for()
        page.reload()
        page.get_by_role("heading", name="Review").wait_for()
        counts = page.locator("#import-counts")
        assert counts.locator("[data-count='Rows in the file']").inner_text() == "10,000"
        assert counts.locator("[data-count='Invalid']").inner_text() == "4"
        assert counts.locator("[data-count='Valid']").inner_text() == "9,996"
        errors = page.locator("#error-rows tbody tr")
        errors.first.wait_for()
        assert [errors.nth(i).locator("td").first.inner_text() for i in range(errors.count())] == [
            "17",
            "256",
            "4000",
            "9999",
        ]
        snap(page, "06-review")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download errors.csv").click()
        assert download.value.path().read_text().count("\n") == 5

        page.get_by_role("button", name=re.compile("^Approve")).click()
        page.get_by_role("heading", name="Completed").wait_for()
        assert counts.locator("[data-count='Inserted']").inner_text() == "9,996"
        snap(page, "07-completed")

        page.get_by_role("link", name="Open People").click()
        page.wait_for_url(dataset_url)
        page.locator("#row-count").get_by_text("9,996").wait_for()
        page.get_by_role("region", name="Rows, page 1").wait_for()
        page.get_by_role("button", name="Next").click()
        page.get_by_role("region", name="Rows, page 2").wait_for()
        snap(page, "08-rows")
        page.get_by_role("button", name="Export to CSV").click()
        link = page.get_by_role("link", name="Download CSV")
        link.wait_for()
        snap(page, "09-export-ready")
        with page.expect_download() as download:
            link.click()
        exported = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
        assert exported[0] == ["id", "name", "email", "age"]
        assert len(exported) == 9_997
        assert {row[0] for row in exported[1:]} == {str(n) for n in range(1, 10_001)} - {str(n) for n in BAD}
        assert page.dialogs == []


def test_file_contents_are_shown_as_text_never_as_html(
    browser: Any, site: SwaEmulator, tmp_path: Path
) -> None:
    source = tmp_path / "evil.csv"
    source.write_text('id,note\n1,"<img src=x onerror=alert(1)>"\n2,<script>alert(2)</script>\n')
    with visitor(browser, site, "eve") as page:
        page.goto(site.url + "/datasets/new")
        page.get_by_label("Name", exact=True).first.fill("Evil")
        page.get_by_role("button", name="Add a field").click()
        page.locator("fieldset.schema-field").last.locator("[data-part=name]").fill("note")
        page.get_by_role("button", name="Create dataset", exact=True).click()
        page.get_by_role("link", name="Import a file").click()
        page.set_input_files("#file", str(source))
        preview = page.get_by_role("region", name="Preview")
        preview.get_by_text("<img src=x onerror=alert(1)>").wait_for()
        assert page.locator("main img").count() == 0
        assert page.locator("main script").count() == 0
        snap(page, "10-xss-preview")
        page.get_by_role("button", name="Start import").click()
        page.get_by_role("heading", name="Review").wait_for()
        page.get_by_role("button", name=re.compile("^Approve")).click()
        page.get_by_role("link", name="Open Evil").click()
        page.get_by_role("region", name="Rows, page 1").get_by_text("<script>alert(2)</script>").wait_for()
        page.wait_for_timeout(500)
        assert page.dialogs == []


def test_anonymous_visitors_are_sent_to_sign_in(browser: Any, site: SwaEmulator) -> None:
    with visitor(browser, site, None) as page:
        page.goto(site.url + "/")
        page.get_by_role("link", name="Sign in to start").wait_for()
        snap(page, "00-signed-out")
        for path in ("/datasets", "/datasets/new", "/admin"):
            page.goto(site.url + path)
            page.wait_for_url(re.compile(r"/\.auth/login/"))


def test_a_signed_in_visitor_who_is_not_admin_gets_no_admin_page(browser: Any, site: SwaEmulator) -> None:
    with visitor(browser, site, "norm") as page:
        page.goto(site.url + "/datasets")
        page.get_by_role("heading", name="My datasets").wait_for()
        assert page.get_by_role("link", name="Admin").count() == 0
        page.goto(site.url + "/admin")
        page.wait_for_load_state("networkidle")
        assert page.get_by_role("heading", name="Queues").count() == 0
        assert page.get_by_text("Poison messages").count() == 0


def test_an_admin_replays_a_poison_message(
    browser: Any, site: SwaEmulator, devhost: Devhost, azurite: Azurite
) -> None:
    api = devhost.api("ops-owner")
    dataset_id = api.create_dataset({"fields": [{"name": "a", "type": "string"}]})
    export_id = api.post(f"/api/datasets/{dataset_id}/exports").json()["id"]
    api.wait_for_export(export_id)
    queues = QueueServiceClient.from_connection_string(azurite.connection_string)
    poison = queues.get_queue_client("export-requests-poison", message_encode_policy=TextBase64EncodePolicy())
    with contextlib.suppress(ResourceExistsError):
        poison.create_queue()
    body = json.dumps({"id": export_id, "traceparent": None})
    poison.send_message(body)
    with visitor(browser, site, "root", roles=("admin",)) as page:
        page.goto(site.url + "/admin")
        page.get_by_role("heading", name="Queues").wait_for()
        row = page.locator("tr", has_text=export_id)
        row.wait_for()
        snap(page, "11-admin")
        row.get_by_role("button", name="Replay").click()
        page.locator("#announcer").filter(has_text="Replayed").wait_for(state="attached")
        page.locator("tr", has_text=export_id).wait_for(state="detached")
        snap(page, "12-admin-replayed")


def test_a_page_that_finishes_loading_leaves_the_focus_where_the_keyboard_moved_it(
    browser: Any, site: SwaEmulator
) -> None:
    with visitor(browser, site, "tabs-ahead") as page:
        held: list[Any] = []  # the first list answers only when let go; later ones at once

        def hold_the_first(route: Any) -> None:
            if held:
                route.continue_()
            else:
                held.append(route)

        page.route(re.compile(r"/api/datasets\?"), hold_the_first)
        page.goto(site.url + "/datasets")
        page.get_by_role("heading", name="My datasets").wait_for()
        for _ in range(12):  # meanwhile, Tab to the "New dataset" link
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "New dataset":
                break
        assert page.evaluate("document.activeElement.textContent") == "New dataset"
        for _ in range(100):
            if held:
                break
            page.wait_for_timeout(50)
        held[0].continue_()  # the list arrives while the link has the focus
        page.get_by_text("You have no datasets yet.").wait_for()
        assert page.evaluate("document.activeElement.textContent") == "New dataset"  # not the heading
        page.get_by_role("link", name="My datasets").click()  # a navigation still focuses its heading
        page.get_by_text("You have no datasets yet.").wait_for()
        assert page.evaluate("document.activeElement.tagName") == "H1"


def test_every_control_is_labelled_and_the_keyboard_gets_everywhere(browser: Any, site: SwaEmulator) -> None:
    with visitor(browser, site, "kay") as page:
        page.goto(site.url + "/datasets")
        page.get_by_role("heading", name="My datasets").wait_for()
        for _ in range(12):  # Tab from the top of the page to the "New dataset" link, then follow it
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "New dataset":
                break
        assert page.evaluate("document.activeElement.textContent") == "New dataset"
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), "the focused link shows no focus ring"
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="New dataset").wait_for()
        assert page.evaluate("document.activeElement.tagName") == "H1"  # focus moves to the new page
        page.get_by_role("button", name="Add a field").click()
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('main input, main select, main textarea')]
                .filter((el) => el.type !== 'hidden' && !(el.labels && el.labels.length)
                    && !el.getAttribute('aria-label'))
                .map((el) => el.outerHTML)"""
        )
        assert unlabelled == []
