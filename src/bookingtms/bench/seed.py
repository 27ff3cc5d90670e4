"""`bookingtms bench seed`: the data set the benchmark runs on, loaded with COPY.

    bookingtms bench seed --profile enterprise|small|ci [--seed N] [--database-url URL] [--reset]

One transaction, as the owner role: triggers (foreign-key checks included) are off while COPYing
(`session_replication_role = replica`; the generator writes every row consistent by construction),
the secondary indexes of the big tables are dropped first and built once at the end, ANALYZE, then
the statistics roll-ups are rebuilt if the database has `rebuild_daily_stats()`. A failure leaves
nothing behind. After the commit a VACUUM sets the visibility map and hint bits, so the benchmark
neither starts with index scans that visit every heap page nor meets autovacuum halfway. Seeded organizations have slugs `bench-NNNNN`; seeding over an
existing bench data set refuses (exit 2) unless `--reset`, which deletes it first. The rows
themselves come from `seed_data`; a manifest for `bookingtms bench run` goes to
`<data dir>/bench/manifest.json`."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from bookingtms.bench.seed_data import BATCH_TABLES, COLUMNS, PROFILES, Generator, Lines, dashed

# All seeded staff share it (a load generator logs in as any owner); it meets the password policy.
PASSWORD = "Bench-Load-2026!"
SLUG_PATTERN = "bench-%"
MANIFEST_ORGANIZATIONS = 1000
BATCH_BOOKINGS = 50_000  # organizations are generated and COPYed in batches of about this many bookings
# Tables whose secondary (non-constraint) indexes are dropped for the load and built after it.
BIG_TABLES = ("activity_sessions", "customers", "slot_reservations", "bookings", "payments")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("seed", help="generate the benchmark's data set with COPY",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small",
                        help="enterprise: 10,000 organizations, 12M bookings; small: a tenth; ci: tiny")
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data; default 1)")
    parser.add_argument("--database-url", help="the owner's URL (default: DATABASE_URL, else the embedded server)")
    parser.add_argument("--reset", action="store_true", help="delete an existing bench data set first")
    parser.set_defaults(func=run)


class Stages:
    """Elapsed seconds per stage, printed as each one ends."""

    def __init__(self):
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args):
        print(f"{name} ...", flush=True)
        began = time.monotonic()
        result = fn(*args)
        self.seconds[name] = round(time.monotonic() - began, 2)
        print(f"{name}: {self.seconds[name]:.1f} s", flush=True)
        return result

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.monotonic() - self.started, 2)}


def run(args) -> int:
    import psycopg

    from bookingtms.auth.passwords import hash_password
    from bookingtms.config import get_settings
    from bookingtms.db.embedded import ensure_servers
    from bookingtms.db.migrate import run_migrations
    from bookingtms.db.urls import owner_url

    profile = PROFILES[args.profile]
    stages = Stages()
    settings = get_settings()
    if args.database_url:  # the owner's server, straight (no pooler)
        settings.database_url, settings.database_direct_url = args.database_url, None
    settings = stages.run("prepare", lambda: ensure_servers(settings))
    stages.run("migrate", run_migrations, settings)
    url = owner_url(settings).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        existing = conn.execute("SELECT count(*) FROM organizations WHERE slug LIKE %s", (SLUG_PATTERN,)).fetchone()[0]
        if existing and not args.reset:
            print(f"bench seed: this database already holds a bench data set ({existing} organizations with slugs "
                  f"'bench-*'); pass --reset to delete it and seed again", file=sys.stderr)
            return 2
        if existing:
            stages.run("reset", delete_bench_data, conn)
        plan_id = conn.execute("SELECT id FROM plans WHERE slug = 'enterprise'").fetchone()
        if plan_id is None:
            print("bench seed: the 'enterprise' plan is missing (migrations not applied?)", file=sys.stderr)
            return 2
        generator = Generator(profile, args.seed, datetime.now(timezone.utc), plan_id[0].hex, hash_password(PASSWORD),
                              settings.session_horizon_days)
        print(f"seeding profile '{profile.name}' (seed {args.seed}): {profile.organizations:,} organizations, "
              f"{profile.organizations * profile.venues_per_organization:,} venues, "
              f"{profile.organizations * profile.venues_per_organization * profile.activities_per_venue:,} activities, "
              f"{profile.days_ahead} days of sessions ahead, {profile.past_bookings:,} past bookings", flush=True)
        counts, samples = load(conn, generator, stages)
        stages.run("vacuum", lambda: conn.execute("VACUUM"))
    seconds = stages.total()
    manifest = write_manifest(settings.data_dir / "bench" / "manifest.json", profile.name, generator, counts,
                              samples, seconds)
    print("counts: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"staff password (every seeded owner, e.g. {generator.organizations[0].owner_email}): {PASSWORD}")
    print(f"manifest: {manifest}")
    return 0


def load(conn, generator: Generator, stages: Stages) -> tuple[dict[str, int], dict[int, list[dict]]]:
    """Everything in one transaction; returns the counts and the manifest's booking samples."""
    counts: dict[str, int] = {}
    samples: dict[int, list[dict]] = {}
    with conn.transaction():
        replica = _without_triggers(conn)
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        indexes = _drop_secondary_indexes(conn)

        def catalog():
            lines = generator.catalog()
            for table in ("organizations", "users", "venues", "activities"):
                copy(conn, table, lines)
            counts.update(lines.counts)

        stages.run("organizations", catalog)
        stages.run("sessions and bookings", _bookings, conn, generator, counts, samples)
        stages.run("indexes", _create_indexes, conn, indexes)
        # statistics before the roll-ups' big joins are planned (ANALYZE counts this transaction's rows)
        stages.run("analyze", lambda: conn.execute("ANALYZE"))
        if conn.execute("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'rebuild_daily_stats')").fetchone()[0]:
            stages.run("daily stats", _rebuild_daily_stats, conn)
        if not replica:
            print("note: not a superuser, so triggers stayed on (slower)", flush=True)
    return counts, samples


def _rebuild_daily_stats(conn) -> None:
    """The roll-ups the bookings triggers would have kept (migration 0005), then their statistics."""
    conn.execute("SELECT rebuild_daily_stats()")
    conn.execute("ANALYZE daily_stats")


def _without_triggers(conn) -> bool:
    """Triggers and foreign-key checks off for this transaction (needs a superuser); the
    generator writes consistent rows, and the roll-ups the triggers keep are rebuilt after."""
    import psycopg

    try:
        with conn.transaction():  # a savepoint: a refusal leaves the outer transaction usable
            conn.execute("SET LOCAL session_replication_role = replica")
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


def _drop_secondary_indexes(conn) -> list[str]:
    """Drops the big tables' indexes that back no constraint; returns their definitions. Building
    an index once over the loaded rows is much faster than growing it row by row, and a failure
    rolls the drop back with everything else."""
    rows = conn.execute("""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
          FROM pg_index i
         WHERE i.indrelid = ANY(%s::regclass[])
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
         ORDER BY 1""", (list(BIG_TABLES),)).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [definition for _, definition in rows]


def _create_indexes(conn, definitions: list[str]) -> None:
    from tqdm import tqdm

    for definition in tqdm(definitions, desc="indexes", unit="index", file=sys.stdout, mininterval=2):
        conn.execute(definition)


def copy(conn, table: str, lines: Lines) -> None:
    data = lines.payload(table)
    if not data:
        return
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as out:
        out.write(data)


def _bookings(conn, generator: Generator, counts: dict[str, int], samples: dict[int, list[dict]]) -> None:
    """Organizations in batches: the next batch is generated (in a thread) while the last one is
    COPYed, so Python and PostgreSQL work side by side."""
    from tqdm import tqdm

    organizations = generator.organizations
    per_org = max(1, generator.profile.past_bookings // max(1, len(organizations)))
    size = max(1, BATCH_BOOKINGS // per_org)
    batches = [organizations[i:i + size] for i in range(0, len(organizations), size)]
    every = max(1, -(-len(organizations) // MANIFEST_ORGANIZATIONS))
    waited, copying = 0.0, dict.fromkeys(BATCH_TABLES, 0.0)
    with ThreadPoolExecutor(1) as pool, tqdm(total=len(organizations), desc="organizations", unit="org",
                                             file=sys.stdout, mininterval=2) as bar:
        pending = pool.submit(generator.batch, batches[0])
        for following in [*batches[1:], None]:
            began = time.monotonic()
            lines = pending.result()
            waited += time.monotonic() - began
            if following is not None:
                pending = pool.submit(generator.batch, following)
            for table in BATCH_TABLES:
                began = time.monotonic()
                copy(conn, table, lines)
                copying[table] += time.monotonic() - began
            for key, value in lines.counts.items():
                counts[key] = counts.get(key, 0) + value
            samples.update({i: s for i, s in lines.samples.items() if i % every == 0})
            bar.update(len(lines.samples))
    # Which side was the bottleneck: waiting for Python to generate, or PostgreSQL to take the rows.
    print(f"  waited for the generator {waited:.1f} s; COPY " +
          ", ".join(f"{table} {seconds:.1f} s" for table, seconds in copying.items()), flush=True)


def delete_bench_data(conn) -> None:
    """Deletes every row of the bench organizations (found by slug) from every table that has an
    organization_id, the rows that point at their users, then the users and organizations; then
    VACUUMs, so the next load does not start among millions of dead rows."""
    tables = [r[0] for r in conn.execute("""
        SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attname = 'organization_id' AND NOT a.attisdropped
           AND c.relname NOT IN ('organizations', 'users')""")]
    user_refs = conn.execute("""
        SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.confrelid = 'users'::regclass AND cardinality(c.conkey) = 1""").fetchall()
    with conn.transaction():
        if not _without_triggers(conn):
            raise SystemExit("bench seed --reset needs a superuser (foreign keys are not checked row by row)")
        conn.execute("CREATE TEMP TABLE bench_orgs ON COMMIT DROP AS "
                     "SELECT id FROM organizations WHERE slug LIKE %s", (SLUG_PATTERN,))
        conn.execute("CREATE TEMP TABLE bench_users ON COMMIT DROP AS "
                     "SELECT id FROM users WHERE organization_id IN (SELECT id FROM bench_orgs)")
        for table, column in user_refs:
            conn.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT id FROM bench_users)")
        for table in tables:
            conn.execute(f"DELETE FROM {table} WHERE organization_id IN (SELECT id FROM bench_orgs)")
        conn.execute("DELETE FROM users WHERE id IN (SELECT id FROM bench_users)")
        conn.execute("DELETE FROM organizations WHERE id IN (SELECT id FROM bench_orgs)")
    for table in [*tables, "users", "organizations"]:
        conn.execute(f"VACUUM {table}")


def write_manifest(path: Path, profile: str, generator: Generator, counts: dict[str, int],
                   samples: dict[int, list[dict]], seconds: dict[str, float]) -> Path:
    """What `bookingtms bench run` needs: the password, the counts, and up to 1000 organizations
    spread over the data set with their venues, activities and some bookings."""
    organizations = []
    for index in sorted(samples):
        org = generator.organizations[index]
        organizations.append({
            "id": dashed(org.id), "owner_email": org.owner_email,
            "venues": [{"id": dashed(v.id), "embed_key": v.embed_key, "timezone": v.zone,
                        "activity_ids": [dashed(a.id) for a in v.activities]} for v in org.venues],
            "bookings": samples[index]})
    manifest = {
        "profile": profile, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "password": PASSWORD,
        "counts": {k: counts.get(k, 0) for k in ("organizations", "venues", "activities", "sessions", "bookings",
                                                  "customers", "payments")},
        "seconds": seconds, "organizations": organizations}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1))
    return path
