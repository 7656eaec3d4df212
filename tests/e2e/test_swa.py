"""Through the real SWA emulator: route rules, auth emulation, security headers, and a real browser."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import requests

from devhost.swa import SwaEmulator
from tests.e2e.conftest import OUTPUT_DIR, Devhost, launch_chromium


@pytest.fixture(scope="module")
def swa(devhost: Devhost) -> Iterator[SwaEmulator]:
    with SwaEmulator(api_url=devhost.url, log_file=OUTPUT_DIR / "swa.log") as emulator:
        yield emulator


def auth_cookie(user_id: str, roles: tuple[str, ...] = ()) -> str:
    principal = {
        "identityProvider": "aad",
        "userId": user_id,
        "userDetails": f"{user_id}@example.com",
        "userRoles": ["anonymous", "authenticated", *roles],
    }
    return base64.b64encode(json.dumps(principal).encode()).decode()


def test_health_is_anonymous(swa: SwaEmulator) -> None:
    answer = requests.get(swa.url + "/api/health", timeout=30)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def test_me_needs_sign_in(swa: SwaEmulator) -> None:
    answer = requests.get(swa.url + "/api/me", timeout=30, allow_redirects=False)
    assert answer.status_code == 302  # the 401 becomes a redirect to sign in (responseOverrides)
    assert "/.auth/login/" in answer.headers["Location"]


@pytest.mark.parametrize(
    "path", ["/datasets", "/datasets/new", "/imports/01arz3ndektsv4rrffq69g5fav", "/admin"]
)
def test_protected_pages_send_anonymous_visitors_to_sign_in(swa: SwaEmulator, path: str) -> None:
    answer = requests.get(swa.url + path, timeout=30, allow_redirects=False)
    assert answer.status_code == 302 and "/.auth/login/" in answer.headers["Location"]


def test_openapi_is_public(swa: SwaEmulator) -> None:
    answer = requests.get(swa.url + "/api/openapi.json", timeout=30)
    assert answer.status_code == 200 and answer.json()["openapi"].startswith("3.1")


def test_me_with_the_auth_cookie(swa: SwaEmulator) -> None:
    answer = requests.get(
        swa.url + "/api/me", cookies={"StaticWebAppsAuthCookie": auth_cookie("ada")}, timeout=30
    )
    assert answer.status_code == 200
    assert answer.json()["userId"] == "ada"
    assert answer.json()["userDetails"] == "ada@example.com"


def test_ops_needs_the_admin_role(swa: SwaEmulator) -> None:
    answer = requests.get(
        swa.url + "/api/ops/queues",
        cookies={"StaticWebAppsAuthCookie": auth_cookie("ada")},
        timeout=30,
        allow_redirects=False,
    )
    # Real SWA answers 403; the emulator answers 401, which the site turns into a sign-in redirect.
    assert answer.status_code in (302, 401, 403)
    assert "queues" not in answer.text


def test_pages_carry_security_headers_and_fall_back_to_the_shell(swa: SwaEmulator) -> None:
    page = requests.get(swa.url + "/somewhere/else", timeout=30)
    assert page.status_code == 200
    assert "<title>Loadbay</title>" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    asset = requests.get(swa.url + "/assets/app.js", timeout=30)
    assert asset.status_code == 200
    assert "max-age=3600" in asset.headers["Cache-Control"]


@pytest.mark.browser
def test_the_shell_in_chromium_shows_who_is_signed_in(swa: SwaEmulator) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(swa.url + "/")
            page.get_by_role("link", name="Sign in to start").wait_for()
            assert page.locator("#nav").inner_text() == "Sign in"
            context.add_cookies(
                [{"name": "StaticWebAppsAuthCookie", "value": auth_cookie("grace"), "url": swa.url}]
            )
            page.reload()
            page.locator("#nav").get_by_text("grace@example.com").wait_for()
            page.get_by_role("heading", name="My datasets").wait_for()
            OUTPUT_DIR.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT_DIR / "shell-signed-in.png"))
        finally:
            browser.close()
