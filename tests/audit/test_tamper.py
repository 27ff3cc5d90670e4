"""Tampering with the audit trail as the database owner is found by `bookingtms doctor`.

doctor checks the whole test database, and other tests run it too, so every tamper happens in an
organization made for this test alone, and the `finally` blocks put the database back to a state
doctor accepts: the changed row restored, and in the end that organization's whole chain removed
(an empty chain is a valid chain)."""

from __future__ import annotations

from sqlalchemy import text

from tests.audit.helpers import send
from tests.factories import make_tenant, run_doctor

RECOMPUTE = """audit_row_hash(prev_hash, chain_seq, organization_id, actor_id, actor_type, actor_label, action,
                              target_type, target_id, request_id, ip, changes, created_at)"""


def chain(owner_engine, org: str) -> list:
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT id, chain_seq, action, row_hash FROM audit_log WHERE organization_id = :o "
                                 "ORDER BY chain_seq"), {"o": org}).all()


async def assert_doctor_ok() -> None:
    code, output = await run_doctor()
    assert code == 0 and output.splitlines()[-1].endswith("OK"), output


async def assert_doctor_finds(*expected: str) -> str:
    code, output = await run_doctor()
    assert code != 0, output
    assert "OK" not in output.splitlines()[-1], output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    return output


async def test_doctor_finds_a_changed_a_relinked_and_a_deleted_audit_row(client, platform_admin, owner_engine):
    tenant = await make_tenant(client, platform_admin)
    org = tenant.organization_id
    try:
        for city in ("Rome", "Milan", "Turin"):
            await send(client, "PATCH", f"/v1/venues/{tenant.venue_id}", tenant.headers, json={"city": city},
                       expect=200)
        rows = chain(owner_engine, org)
        assert [r.chain_seq for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 4
        victim = rows[1]
        await assert_doctor_ok()

        # 1. A row's contents changed: its own hash no longer matches.
        where = {"id": victim.id}
        with owner_engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET action = 'venue.viewed' WHERE id = :id"), where)
        try:
            output = await assert_doctor_finds(f"audit chain org {org}", f"seq {victim.chain_seq} ", "contents changed")
            assert f"seq {victim.chain_seq + 1}" not in output, output  # the next row is fine
        finally:
            with owner_engine.begin() as conn:
                conn.execute(text("UPDATE audit_log SET action = :a WHERE id = :id"), {**where, "a": victim.action})
        await assert_doctor_ok()  # restored: the chain verifies again

        # 2. Changed and re-hashed: the row itself now checks out, but its successor's link breaks.
        with owner_engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET action = 'venue.viewed' WHERE id = :id"), where)
            conn.execute(text(f"UPDATE audit_log SET row_hash = {RECOMPUTE} WHERE id = :id"), where)
        try:
            output = await assert_doctor_finds(f"audit chain org {org}", f"seq {victim.chain_seq + 1}: link broken")
            assert "contents changed" not in output, output
        finally:
            with owner_engine.begin() as conn:
                conn.execute(text("UPDATE audit_log SET action = :a, row_hash = :h WHERE id = :id"),
                             {**where, "a": victim.action, "h": victim.row_hash})
        await assert_doctor_ok()

        # 3. A row deleted: a gap in the sequence.
        with owner_engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log WHERE id = :id"), where)
        await assert_doctor_finds(f"audit chain org {org}",
                                  f"seq {victim.chain_seq} missing before seq {victim.chain_seq + 1}")
    finally:
        with owner_engine.begin() as conn:  # this organization's trail goes entirely; an empty chain is intact
            conn.execute(text("DELETE FROM audit_log WHERE organization_id = :o"), {"o": org})
    # The emptied chain starts afresh, and the whole database verifies again.
    await send(client, "PATCH", f"/v1/venues/{tenant.venue_id}", tenant.headers, json={"city": "Naples"}, expect=200)
    assert [r.chain_seq for r in chain(owner_engine, org)] == [1]
    await assert_doctor_ok()
