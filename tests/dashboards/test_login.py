"""Signing in to the dashboard with a token, in a real browser: the way back to the page asked
for, the cookie's protections, what a read token may not do, and signing out."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.auth_tokens import ADMIN, INGEST, READ, TOKENS_SETTING
from tests.conftest import RunningVigil


@pytest.fixture
def vigil_settings(vigil_settings: dict[str, Any]) -> dict[str, Any]:
    return vigil_settings | {"tokens": TOKENS_SETTING, "detectors_enabled": False}


def sign_in(page: Page, secret: str) -> None:
    page.fill("#token", secret)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()


def test_a_page_asks_for_a_token_and_returns_to_itself_signed_in(page: Page, vigil_server: RunningVigil) -> None:
    page.goto(f"{vigil_server.api}/alerts?since=1h")
    assert page.url == f"{vigil_server.api}/login?next=%2Falerts%3Fsince%3D1h"
    sign_in(page, READ)
    assert page.url == f"{vigil_server.api}/alerts?since=1h"
    assert page.inner_text("#signed-in") == "reader"
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("vigil_session", True, "Lax")
    assert READ not in cookie["value"]
    # A read token sees alerts and silences but may not change them.
    assert page.locator("#new-silence").count() == 0
    assert page.inner_text("#silence-needs-admin").startswith(
        "Creating and expiring silences needs a token with the admin scope; you are signed in as reader."
    )


def test_a_wrong_or_non_read_token_is_refused_with_the_reason(page: Page, vigil_server: RunningVigil) -> None:
    page.goto(f"{vigil_server.api}/login")
    sign_in(page, "not-a-token-0000000000")
    assert page.inner_text("#login-error") == "That token is not known. Paste the whole secret, or ask for a new one."
    sign_in(page, INGEST)
    assert page.inner_text("#login-error") == (
        "Token 'agent' has the scopes ingest; signing in needs one with the read scope."
    )
    assert page.context.cookies() == []


def test_an_admin_silences_from_the_page_and_signing_out_ends_the_session(
    page: Page, vigil_server: RunningVigil
) -> None:
    page.goto(f"{vigil_server.api}/alerts")
    sign_in(page, ADMIN)
    assert page.input_value("#new-silence input[name=created_by]") == "root"
    page.fill("#new-silence textarea[name=matchers]", "service=payments")
    page.click("#new-silence button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#silences tbody tr").count() == 1
    assert page.inner_text("#silences tbody tr td:nth-child(4)") == "root"

    page.click("nav form.sign-out button")
    page.wait_for_load_state()
    assert page.url == f"{vigil_server.api}/login"
    assert page.context.cookies() == []
    page.goto(f"{vigil_server.api}/")
    assert page.url == f"{vigil_server.api}/login?next=%2F"


def test_a_login_cannot_send_the_browser_to_another_site(page: Page, vigil_server: RunningVigil) -> None:
    page.goto(f"{vigil_server.api}/login?next=//example.invalid/phish")
    sign_in(page, READ)
    assert page.url == f"{vigil_server.api}/"
