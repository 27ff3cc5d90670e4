"""Organization settings an owner changes: payment provider (Stripe only once onboarding has
enabled charges), SMS reminders and the name, next to the MFA requirement; every change audited."""

from __future__ import annotations

from sqlalchemy import text

from tests.audit.helpers import one_audit_row, send
from tests.factories import add_staff, bearer, make_tenant

SETTINGS = "/v1/organization/settings"


async def test_defaults_then_sms_reminders_and_name(client, tenant, owner_engine):
    got = await client.get(SETTINGS, headers=tenant.headers)
    assert got.status_code == 200
    body = got.json()
    assert body["payment_provider"] == "offline"
    assert body["sms_reminders"] is False
    assert body["stripe_charges_enabled"] is False
    assert body["require_mfa_for"] == []
    assert body["name"].startswith("Org ")

    changed, rid = await send(client, "PATCH", SETTINGS, tenant.headers,
                              json={"sms_reminders": True, "name": "  Escape Co  "}, expect=200)
    assert changed.json() | {} == body | {"sms_reminders": True, "name": "Escape Co"}
    assert (await client.get(SETTINGS, headers=tenant.headers)).json() == changed.json()
    row = one_audit_row(owner_engine, rid)
    assert row.action == "organization.settings_changed"
    assert row.changes == {"sms_reminders": {"from": False, "to": True},
                           "name": {"from": body["name"], "to": "Escape Co"}}
    with owner_engine.connect() as conn:
        stored = conn.execute(text("SELECT name, settings FROM organizations WHERE id = :o"),
                              {"o": tenant.organization_id}).one()
    assert stored.name == "Escape Co" and stored.settings["sms_reminders"] is True

    # MFA keeps working next to the new fields, and an unchanged PATCH records nothing.
    both = await client.patch(SETTINGS, headers=tenant.headers,
                              json={"require_mfa_for": ["admin", "super-admin"], "sms_reminders": True})
    assert both.status_code == 200, both.text
    assert both.json()["require_mfa_for"] == ["super-admin", "admin"] and both.json()["sms_reminders"] is True
    same, rid = await send(client, "PATCH", SETTINGS, tenant.headers, json={"sms_reminders": True}, expect=200)
    assert same.json() == both.json()
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE request_id = :r"), {"r": rid}).scalar_one() == 0

    for bad in ({"sms_reminders": "sometimes"}, {"payment_provider": "paypal"}, {"stripe_charges_enabled": True},
                {"name": ""}):
        refused = await client.patch(SETTINGS, headers=tenant.headers, json=bad)
        assert refused.status_code == 422, (bad, refused.text)


async def test_stripe_only_once_charges_are_enabled(client, tenant, owner_engine):
    refused, rid = await send(client, "PATCH", SETTINGS, tenant.headers, json={"payment_provider": "stripe"},
                              expect=409)
    assert refused.json()["code"] == "stripe_not_ready"
    assert (await client.get(SETTINGS, headers=tenant.headers)).json()["payment_provider"] == "offline"
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT payment_provider FROM organizations WHERE id = :o"),
                            {"o": tenant.organization_id}).scalar_one() == "offline"

    with owner_engine.begin() as conn:  # what Stripe's account.updated webhook records after onboarding
        conn.execute(text("UPDATE organizations SET stripe_charges_enabled = true WHERE id = :o"),
                     {"o": tenant.organization_id})
    switched, rid = await send(client, "PATCH", SETTINGS, tenant.headers, json={"payment_provider": "stripe"},
                               expect=200)
    assert switched.json()["payment_provider"] == "stripe" and switched.json()["stripe_charges_enabled"] is True
    assert one_audit_row(owner_engine, rid).changes == {"payment_provider": {"from": "offline", "to": "stripe"}}
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT payment_provider FROM organizations WHERE id = :o"),
                            {"o": tenant.organization_id}).scalar_one() == "stripe"

    back = await client.patch(SETTINGS, headers=tenant.headers, json={"payment_provider": "offline"})
    assert back.status_code == 200 and back.json()["payment_provider"] == "offline"


async def test_only_the_owner_changes_settings_and_only_their_own(client, tenant, platform_admin):
    manager = await add_staff(client, tenant, "manager")
    assert (await client.get(SETTINGS, headers=bearer(manager))).status_code == 200
    refused = await client.patch(SETTINGS, headers=bearer(manager), json={"sms_reminders": True})
    assert refused.status_code == 403
    other = await make_tenant(client, platform_admin)
    assert (await client.patch(SETTINGS, headers=other.headers, json={"sms_reminders": True})).status_code == 200
    assert (await client.get(SETTINGS, headers=tenant.headers)).json()["sms_reminders"] is False
