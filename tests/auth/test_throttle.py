"""Sign-in throttling: 5 failures per account and 20 per client address in 15 minutes, answered
429 `too_many_attempts` with Retry-After before any password is checked; successes do not count."""

from __future__ import annotations

import asyncio

import pytest

from bookingtms.auth import throttle
from tests.auth.conftest import audit_actions, make_staff, new_address, problem, sign_in
from tests.factories import unique

WRONG = "Wrong-Password-123!"

pytestmark = pytest.mark.usefixtures("throttling")


async def _fail(api, email: str) -> None:
    problem(await api.post("/v1/auth/login", json={"email": email, "password": WRONG}), 401, "invalid_credentials")


def _retry_after(response) -> int:
    value = int(response.headers["retry-after"])
    assert 0 < value <= 15 * 60, value
    return value


async def test_an_account_is_throttled_after_five_failures_from_any_address(client_from, tenant, owner_engine):
    assert (throttle.ACCOUNT_LIMIT.amount, throttle.ACCOUNT_LIMIT.get_expiry()) == (5, 900)
    staff = await make_staff(tenant)
    other = await make_staff(tenant)
    addresses = [client_from() for _ in range(3)]
    # Spread over three addresses: the account's count is what trips, however the email is typed.
    await asyncio.gather(*(_fail(addresses[i % 3], staff.email.upper()) for i in range(5)))

    # The sixth attempt is refused before the password is looked at, even the right one.
    latecomer = client_from()
    refused = await latecomer.post("/v1/auth/login", json={"email": staff.email, "password": staff.password})
    body = problem(refused, 429, "too_many_attempts")
    assert _retry_after(refused) > 15 * 60 - 60
    assert "this account" in body["detail"] and "minutes" in body["detail"]
    assert body["retry_after"] == int(refused.headers["retry-after"])
    problem(await latecomer.post("/v1/auth/login", json={"email": staff.email, "password": WRONG}),
            429, "too_many_attempts")
    # Other accounts, from the same addresses, are not affected.
    await sign_in(latecomer, other.email)
    await sign_in(addresses[0], other.email)

    actions = [a for a, _ in audit_actions(owner_engine, staff.id)]
    assert actions.count("auth.login_failed") == 5 and "auth.login_throttled" in actions


async def test_an_address_is_throttled_after_twenty_failures_over_any_accounts(client_from, tenant):
    assert (throttle.ADDRESS_LIMIT.amount, throttle.ADDRESS_LIMIT.get_expiry()) == (20, 900)
    staff = await make_staff(tenant)
    address = new_address()
    attacker = client_from(address)
    # A spray over many (unknown) accounts, one attempt each, sent together.
    await asyncio.gather(*(_fail(attacker, f"{unique('spray')}-{i}@example.com") for i in range(20)))

    refused = await attacker.post("/v1/auth/login", json={"email": staff.email, "password": staff.password})
    body = problem(refused, 429, "too_many_attempts")
    assert "network address" in body["detail"]
    _retry_after(refused)
    # Same address, another client: still refused. Another address: the account signs in fine.
    problem(await client_from(address).post("/v1/auth/login", json={"email": staff.email, "password": staff.password}),
            429, "too_many_attempts")
    await sign_in(client_from(), staff.email)


async def test_successful_sign_ins_do_not_count_and_clear_the_accounts_failures(api, tenant):
    staff = await make_staff(tenant)
    await asyncio.gather(*(sign_in(api, staff.email) for _ in range(6)))
    await asyncio.gather(*(_fail(api, staff.email) for _ in range(4)))
    await sign_in(api, staff.email)  # 4 failures + a success: the account's count starts over
    await asyncio.gather(*(_fail(api, staff.email) for _ in range(4)))
    await sign_in(api, staff.email)  # 8 failures in all, but never 5 in a row
    await asyncio.gather(*(_fail(api, staff.email) for _ in range(5)))
    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password}),
            429, "too_many_attempts")


async def test_throttling_is_off_with_the_rate_limits(api, tenant, settings, monkeypatch):
    """BOOKINGTMS_RATE_LIMITS=0 (load tests, fuzzing) turns sign-in throttling off too."""
    monkeypatch.setattr(settings, "rate_limits", False)
    staff = await make_staff(tenant)
    for _ in range(7):
        await _fail(api, staff.email)
    await sign_in(api, staff.email)
