"""Onboarding in Chromium: the platform admin signs in, creates an organization with its owner in
the console (no password typed); the owner signs in elsewhere with the emailed temporary password,
is made to choose their own, and lands on the staff dashboard."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect
from sqlalchemy import text

from tests.e2e.conftest import screenshot
from tests.factories import PASSWORD, unique

pytestmark = pytest.mark.xdist_group("browser")

OWN_PASSWORD = "Harbour-Lights-2026!"


async def test_the_platform_onboards_an_organization_whose_owner_replaces_the_temporary_password(
        new_page, live_server, platform_admin, owner_engine):
    slug = unique("onboard")
    owner_email = f"ada@{slug}.example.com"

    admin = await new_page()
    await admin.goto(f"{live_server.url}/auth/login")
    await admin.get_by_label("Email").fill(platform_admin.email)
    await admin.get_by_label("Password").fill(PASSWORD)
    await admin.get_by_role("button", name="Sign in").click()
    await expect(admin).to_have_url(f"{live_server.url}/platform")
    await expect(admin.get_by_role("heading", name="Organizations", level=1)).to_be_visible()
    await expect(admin.get_by_text("organizations ·")).to_be_visible()  # the platform's totals

    await admin.get_by_role("link", name="New organization").click()
    await admin.get_by_label(re.compile(r"^Name")).fill("Harbour Escapes")
    await admin.get_by_label("Slug").fill(slug)
    await admin.get_by_label("Time zone of its first venue").select_option("Europe/Lisbon")
    await admin.get_by_label("Full name").fill("Ada Harbour")
    await admin.get_by_label("Email").fill(owner_email)
    await admin.get_by_role("button", name="Create organization").click()
    await expect(admin.get_by_role("heading", name="Harbour Escapes", level=1)).to_be_visible()
    await expect(admin.get_by_role("status")).to_contain_text(f"{owner_email} has been emailed a temporary password")
    await expect(admin.get_by_text("has not signed in yet")).to_be_visible()
    await expect(admin.get_by_role("cell", name="Europe/Lisbon")).to_be_visible()
    await screenshot(admin, "platform-organization")
    await admin.get_by_role("link", name="← Organizations").click()
    row = admin.get_by_role("row").filter(has=admin.get_by_role("link", name="Harbour Escapes"))
    await expect(row).to_contain_text("Free")
    await expect(row.get_by_role("cell").nth(3)).to_have_text("1")  # its venue
    await screenshot(admin, "platform-organizations")
    await row.get_by_role("link", name="Harbour Escapes").click()

    # The welcome email waits in the outbox with the temporary password.
    with owner_engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM notification_outbox WHERE kind = 'welcome' "
                                    "AND recipient = :e"), {"e": owner_email}).scalar_one()
    temporary = payload["temporary_password"]
    assert temporary and temporary != "[sent]"

    owner = await new_page()  # another browser: another person
    await owner.goto(f"{live_server.url}/admin")
    await expect(owner).to_have_url(re.compile(r"/auth/login\?next=/admin$"))
    await owner.get_by_label("Email").fill(owner_email)
    await owner.get_by_label("Password").fill(temporary)
    await owner.get_by_role("button", name="Sign in").click()
    await expect(owner.get_by_role("heading", name="Choose your own password")).to_be_visible()
    await expect(owner).to_have_url(re.compile(r"/auth/password"))
    await screenshot(owner, "password-change")
    await owner.get_by_label("Temporary password").fill(temporary)
    await owner.get_by_label(re.compile(r"^New password(?! again)")).fill(OWN_PASSWORD)
    await owner.get_by_label("New password again").fill(OWN_PASSWORD)
    await owner.get_by_role("button", name="Save password").click()
    await expect(owner).to_have_url(f"{live_server.url}/admin")
    await expect(owner.get_by_text(owner_email)).to_be_visible()  # signed in, in the dashboard's top bar

    # The console now knows the owner has signed in and chosen a password.
    await admin.reload()
    await expect(admin.get_by_text("last signed in")).to_be_visible()
    await expect(admin.get_by_text("temporary password not yet replaced")).to_have_count(0)
