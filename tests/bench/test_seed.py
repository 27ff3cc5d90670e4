"""`bookingtms bench seed --profile ci`, run through the real command line into the test database:
the data set is what the profile says, consistent enough for `doctor` and every foreign key, usable
through the API (staff log in, the widget shows bookable sessions, the schedule matches the
sessions), isolated per organization, described by the manifest the load generator reads, and
seeding twice refuses unless --reset."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from bookingtms.bench.seed import PASSWORD
from bookingtms.bench.seed_data import PROFILES
from bookingtms.db.engine import DbContext, tenant_transaction
from tests.factories import bearer, login, run_doctor

PROFILE = PROFILES["ci"]
BENCH = "slug LIKE 'bench-%'"


async def seed_cli(data_dir, *args: str) -> tuple[int, str]:
    """`bookingtms bench seed` as an operator runs it, against the test database."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bookingtms.cli", "bench", "seed", "--profile", "ci", *args,
        env={**os.environ, "BOOKINGTMS_DATA_DIR": str(data_dir)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture(scope="module")
async def seeded(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bench-data")
    code, out = await seed_cli(data_dir, "--seed", "11")
    assert code == 0, out
    return {"data_dir": data_dir, "output": out,
            "manifest": json.loads((data_dir / "bench" / "manifest.json").read_text())}


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


async def test_the_data_set_is_the_profile_and_doctor_finds_it_consistent(seeded, owner_engine):
    counts = seeded["manifest"]["counts"]
    assert (counts["organizations"], counts["venues"], counts["activities"]) == (20, 100, 200)
    bench_org = f"organization_id IN (SELECT id FROM organizations WHERE {BENCH})"
    with owner_engine.connect() as conn:
        stored = {table: conn.execute(text(f"SELECT count(*) FROM {table} WHERE {bench_org}")).scalar_one()
                  for table in ("venues", "activities", "activity_sessions", "bookings", "customers", "payments")}
        assert conn.execute(text(f"SELECT count(*) FROM organizations WHERE {BENCH} AND status = 'active' "
                                 "AND owner_id IS NOT NULL")).scalar_one() == 20
        # 12 months at 2,000 a month, on past sessions; and some bookings ahead
        past, ahead = conn.execute(text(f"""
            SELECT count(*) FILTER (WHERE s.start_time < now()), count(*) FILTER (WHERE s.start_time > now())
              FROM bookings b JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
             WHERE b.{bench_org}""")).one()
        # every activity has sessions on each local day from today to 14 days on, 3 or 4 a day
        per_activity = conn.execute(text(f"""
            SELECT count(*) AS sessions, count(DISTINCT (s.start_time AT TIME ZONE v.timezone)::date) AS days,
                   min(s.start_time) > now() AND min(s.start_time) < now() + interval '1 day' AS from_today,
                   max(s.start_time) > now() + interval '13 days 12 hours' AS for_14_days
              FROM activities a
              JOIN venues v ON v.organization_id = a.organization_id AND v.id = a.venue_id
              JOIN activity_sessions s ON s.organization_id = a.organization_id AND s.activity_id = a.id
                                      AND s.start_time > now()
             WHERE a.{bench_org} GROUP BY a.id""")).all()
        sold_out, partly = conn.execute(text(f"""
            SELECT count(*) FILTER (WHERE capacity_remaining = 0),
                   count(*) FILTER (WHERE capacity_remaining BETWEEN 1 AND capacity_total - 1)
              FROM activity_sessions WHERE {bench_org} AND start_time > now()""")).one()
    assert stored == {"venues": 100, "activities": 200, "activity_sessions": counts["sessions"],
                      "bookings": counts["bookings"], "customers": counts["customers"], "payments": counts["payments"]}
    assert past == PROFILE.past_bookings == 24_000 and ahead > 0 and past + ahead == counts["bookings"]
    assert len(per_activity) == 200
    assert all(r.days >= 14 and 14 * 3 <= r.sessions <= 15 * 4 and r.from_today and r.for_14_days
               for r in per_activity), per_activity[:3]
    assert sold_out > 0 and partly > sold_out

    code, report = await run_doctor()
    assert code == 0 and "OK" in report, report


async def test_every_foreign_key_holds(seeded, owner_engine):
    """The load ran with triggers (and so foreign-key checks) off: check every constraint by hand."""
    with owner_engine.connect() as conn:
        foreign_keys = conn.execute(text("""
            SELECT c.conname, c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent,
                   array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                         JOIN pg_attribute ON attrelid = c.conrelid AND attnum = k.n ORDER BY k.i) AS cols,
                   array(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                         JOIN pg_attribute ON attrelid = c.confrelid AND attnum = k.n ORDER BY k.i) AS refs
              FROM pg_constraint c WHERE c.contype = 'f'""")).all()
        broken = {}
        for fk in foreign_keys:
            match = " AND ".join(f"p.{r} = c.{col}" for col, r in zip(fk.cols, fk.refs))
            present = " AND ".join(f"c.{col} IS NOT NULL" for col in fk.cols)
            orphans = conn.execute(text(f"SELECT count(*) FROM {fk.child} c WHERE {present} "
                                        f"AND NOT EXISTS (SELECT 1 FROM {fk.parent} p WHERE {match})")).scalar_one()
            if orphans:
                broken[fk.conname] = orphans
    assert len(foreign_keys) > 20 and not broken


async def test_a_seeded_owner_signs_in_and_sees_their_own_bookings_only(seeded, client):
    first, other = seeded["manifest"]["organizations"][0], seeded["manifest"]["organizations"][1]
    token = await login(client, first["owner_email"], PASSWORD)

    listed = await client.get("/v1/bookings", headers=bearer(token), params={"limit": 100})
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert len(items) == 100 and {b["organization_id"] for b in items} == {first["id"]}
    sample = first["bookings"][0]
    detail = await client.get(f"/v1/bookings/{sample['id']}", headers=bearer(token))
    assert detail.status_code == 200, detail.text
    assert (detail.json()["booking_reference"], detail.json()["customer_email"]) == (sample["reference"], sample["email"])
    public = await client.get(f"/v1/public/bookings/{sample['reference']}", params={"email": sample["email"]})
    assert public.status_code == 200 and public.json()["id"] == sample["id"], public.text

    # another seeded organization's booking and venue do not exist for this owner
    theirs = other["bookings"][0]
    assert (await client.get(f"/v1/bookings/{theirs['id']}", headers=bearer(token))).status_code == 404
    assert (await client.get(f"/v1/venues/{other['venues'][0]['id']}", headers=bearer(token))).status_code == 404
    found = await client.get("/v1/bookings", headers=bearer(token), params={"q": theirs["reference"]})
    assert found.status_code == 200 and found.json()["items"] == []
    # nor, under row-level security, in the database
    async with tenant_transaction(DbContext(organization_id=uuid.UUID(first["id"]))) as db:
        visible = (await db.execute(text("SELECT count(*) FROM bookings WHERE organization_id = :o"),
                                    {"o": other["id"]})).scalar_one()
        all_visible = (await db.execute(text("SELECT count(DISTINCT organization_id) FROM bookings"))).scalar_one()
    assert (visible, all_visible) == (0, 1)


async def test_the_widget_shows_sessions_with_spots_left_for_the_next_14_days(seeded, client):
    venues = [v for org in seeded["manifest"]["organizations"] for v in org["venues"]]
    response = await client.get(f"/v1/public/venues/{venues[0]['embed_key']}/availability")
    assert response.status_code == 200, response.text
    sessions = response.json()["sessions"]
    zone_today = datetime.now(timezone.utc).date()
    days = {date.fromisoformat(s["start_time"][:10]) for s in sessions if s["capacity_remaining"] > 0}
    assert len(days) >= 13 and min(days) <= zone_today + timedelta(days=1) and max(days) >= zone_today + timedelta(days=13)
    assert {s["activity_id"] for s in sessions} == set(venues[0]["activity_ids"])

    # across the seeded venues, the widget shows partly sold sessions (the first few venues suffice)
    partly = 0
    for venue in venues[:40]:
        listed = (await client.get(f"/v1/public/venues/{venue['embed_key']}/availability")).json()["sessions"]
        partly += sum(0 < s["capacity_remaining"] < s["capacity_total"] for s in listed)
    assert partly > 0


async def test_sessions_are_exactly_what_the_activity_schedule_generates(seeded, client):
    """Generating the schedule's sessions over the seeded days creates none: the seeded sessions
    are the schedule's own (same local times, same zone rules), so the session job and schedule
    edits treat them like any others."""
    org = seeded["manifest"]["organizations"][2]
    token = await login(client, org["owner_email"], PASSWORD)
    today = datetime.now(timezone.utc).date()
    for activity_id in org["venues"][0]["activity_ids"]:
        generated = await client.post(f"/v1/activities/{activity_id}/sessions/generate", headers=bearer(token),
                                      json={"from": (today - timedelta(days=1)).isoformat(),
                                            "to": (today + timedelta(days=20)).isoformat()})
        assert generated.status_code == 200, generated.text
        assert generated.json()["created"] == 0 and generated.json()["skipped"] >= 14 * 3, generated.json()


async def test_the_manifest_follows_the_load_generators_contract(seeded, owner_engine):
    manifest = seeded["manifest"]
    assert set(manifest) == {"profile", "created_at", "password", "counts", "seconds", "organizations"}
    assert manifest["profile"] == "ci" and manifest["password"] == PASSWORD
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert set(manifest["counts"]) == {"organizations", "venues", "activities", "sessions", "bookings", "customers",
                                       "payments"}
    assert all(isinstance(v, int) and v > 0 for v in manifest["counts"].values())
    assert "total" in manifest["seconds"] and all(isinstance(v, float) for v in manifest["seconds"].values())
    assert f"total {manifest['seconds']['total']:.1f}" in seeded["output"]
    assert PASSWORD in seeded["output"]

    orgs = manifest["organizations"]
    assert len(orgs) == 20
    for org in orgs:
        assert set(org) == {"id", "owner_email", "venues", "bookings"}
        assert len(org["venues"]) == 5 and 1 <= len(org["bookings"]) <= 20
        for venue in org["venues"]:
            assert set(venue) == {"id", "embed_key", "timezone", "activity_ids"} and len(venue["activity_ids"]) == 2
            assert all(uuid.UUID(i) for i in [venue["id"], *venue["activity_ids"]])
        for booking in org["bookings"]:
            assert set(booking) == {"id", "reference", "email"}
    # what it names is what is stored
    venue, booking = orgs[5]["venues"][3], orgs[5]["bookings"][0]
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT v.timezone FROM venues v JOIN organizations o ON o.id = v.organization_id "
                                 "WHERE v.id = :v AND v.embed_key = :k AND o.id = :o"),
                            {"v": venue["id"], "k": venue["embed_key"], "o": orgs[5]["id"]}).scalar_one() == venue["timezone"]
        assert conn.execute(text("SELECT c.email FROM bookings b JOIN customers c ON c.organization_id = b.organization_id "
                                 "AND c.id = b.customer_id WHERE b.id = :b AND b.booking_reference = :r"),
                            {"b": booking["id"], "r": booking["reference"]}).scalar_one() == booking["email"]
        assert conn.execute(text("SELECT u.email FROM users u WHERE u.organization_id = :o AND u.role = 'super-admin'"),
                            {"o": orgs[5]["id"]}).scalar_one() == orgs[5]["owner_email"]


async def test_seeding_again_refuses_and_reset_replaces_the_data_set(seeded, owner_engine, tmp_path):
    before = seeded["manifest"]["organizations"][0]["id"]
    code, out = await seed_cli(tmp_path, "--seed", "11")
    assert code == 2 and "already holds a bench data set" in out and "--reset" in out, out
    assert scalar(owner_engine, f"SELECT count(*) FROM organizations WHERE {BENCH}") == 20

    code, out = await seed_cli(tmp_path, "--seed", "12", "--reset")
    assert code == 0, out
    manifest = json.loads((tmp_path / "bench" / "manifest.json").read_text())
    assert manifest["organizations"][0]["id"] != before
    assert scalar(owner_engine, f"SELECT count(*) FROM organizations WHERE {BENCH}") == 20
    assert scalar(owner_engine, "SELECT count(*) FROM organizations WHERE id = :o", o=before) == 0
    assert scalar(owner_engine, "SELECT count(*) FROM bookings WHERE organization_id = :o", o=before) == 0
    assert scalar(owner_engine, f"SELECT count(*) FROM bookings WHERE organization_id IN "
                                f"(SELECT id FROM organizations WHERE {BENCH})") == manifest["counts"]["bookings"]
