"""`bookingtms bench plans`: the query-plan check (issue 5, item 9).

Drives every hot endpoint once, in process, against generated data (`bookingtms bench seed`),
records every statement the application sends to PostgreSQL with its parameters and its
row-level-security context, then EXPLAINs each one under that same context and reports any
sequential scan of a large table. Exits 1 when there is one, so a test can hold the line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path


DEFAULT_MIN_ROWS = 10_000  # smaller tables are cheaper to scan than to index; the planner knows
STATEMENT_KINDS = ("SELECT", "WITH", "UPDATE", "DELETE", "INSERT")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("plans", help="EXPLAIN every hot query on generated data; fail on a sequential "
                                                 "scan of a large table")
    parser.add_argument("--manifest", type=Path, help="the seed's manifest (default: <data dir>/bench/manifest.json)")
    parser.add_argument("--min-rows", type=int, default=DEFAULT_MIN_ROWS,
                        help="a table with at least this many rows must not be scanned sequentially")
    parser.add_argument("--organizations", type=int, default=3, help="how many seeded organizations to drive")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.set_defaults(func=run)


@dataclass
class Statement:
    sql: str
    parameters: tuple
    context: tuple | None  # (user_id, organization_id, is_platform) as set_config received them
    calls: int = 1
    plan: dict | None = None
    scans: list[str] = field(default_factory=list)
    seq_scans: list[str] = field(default_factory=list)
    error: str | None = None


class StatementRecorder:
    """A SQLAlchemy `before_cursor_execute` listener: each distinct statement sent, with the RLS
    context of its transaction (kept on the connection by engine.set_context)."""

    def __init__(self) -> None:
        self.statements: dict[str, Statement] = {}

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if "set_config('app.user_id'" in statement:
            return
        if statement.lstrip().split(None, 1)[0].upper() not in STATEMENT_KINDS:
            return
        if (seen := self.statements.get(statement)) is not None:
            seen.calls += 1
            return
        rls = getattr(conn.connection.driver_connection, "context", None)
        self.statements[statement] = Statement(statement, tuple(parameters or ()), rls)


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def _describe(node: dict) -> str:
    kind = node["Node Type"]
    if "Index Name" in node:
        return f"{kind} using {node['Index Name']} on {node.get('Relation Name', '?')}"
    if "Relation Name" in node:
        return f"{kind} on {node['Relation Name']}"
    return kind


async def _explain(statements: list[Statement], large: dict[str, float]) -> None:
    from bookingtms.db.engine import get_engine

    set_context = ("SELECT set_config('app.user_id', $1, true), set_config('app.organization_id', $2, true), "
                   "set_config('app.is_platform', $3, true)")
    async with get_engine().connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for st in statements:
            transaction = raw.transaction()
            await transaction.start()
            try:
                if st.context:
                    await raw.fetch(set_context, *st.context)
                explained = await raw.fetchval("EXPLAIN (FORMAT JSON) " + st.sql, *st.parameters)
                # The pool's connections decode json themselves; a bare connection hands back text.
                st.plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]
                for node in _plan_nodes(st.plan["Plan"]):
                    if node["Node Type"] in ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"):
                        st.scans.append(_describe(node))
                    relation = node.get("Relation Name")
                    if node["Node Type"] == "Seq Scan" and relation in large:
                        st.seq_scans.append(f"{relation} ({int(large[relation]):,} rows)")
            except Exception as exc:  # a statement that cannot be explained is reported, not fatal
                st.error = f"{type(exc).__name__}: {exc}"
            finally:
                await transaction.rollback()


async def _large_tables(min_rows: int) -> dict[str, float]:
    from sqlalchemy import text

    from bookingtms.db.engine import get_engine

    async with get_engine().connect() as conn:
        rows = await conn.execute(text(
            "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' "
            "AND relnamespace = 'public'::regnamespace AND reltuples >= :n"), {"n": min_rows})
        return {name: tuples for name, tuples in rows}


async def _drive(client, manifest: dict, organizations: int) -> list[tuple[str, int]]:
    """Every hot endpoint once per organization: the widget's browsing and booking, the customer's
    lookup, the staff dashboard's lists, search, detail, stats and export, then the jobs."""
    from bookingtms import worker

    answers: list[tuple[str, int]] = []

    async def call(method: str, url: str, label: str | None = None, **kwargs):
        response = await client.request(method, url, **kwargs)
        answers.append((f"{method} {label or url}", response.status_code))
        return response

    today = date.today()
    window = {"from": today.isoformat(), "to": (today + timedelta(days=13)).isoformat()}
    picked = [org for org in manifest["organizations"] if org["venues"]][:organizations]
    for n, org in enumerate(picked):
        venue = org["venues"][0]
        base = f"/v1/public/venues/{venue['embed_key']}"
        await call("GET", base, "/v1/public/venues/{embed_key}")
        sessions = (await call("GET", f"{base}/availability", "/v1/public/venues/{embed_key}/availability",
                               params=window)).json().get("sessions", [])
        if venue.get("activity_ids"):
            await call("GET", f"{base}/availability", "/v1/public/venues/{embed_key}/availability?activity_id",
                       params={**window, "activity_id": venue["activity_ids"][0], "available": "true"})
        open_sessions = [s for s in sessions if s["capacity_remaining"] >= 2]
        booking = None
        if open_sessions:
            email = f"plans-{n}-{int(time.time())}@example.com"
            held = await call("POST", f"{base}/reservations", "/v1/public/venues/{embed_key}/reservations",
                              json={"session_id": open_sessions[0]["id"], "spots": 1, "customer_email": email})
            if held.status_code == 201:
                reservation = held.json()["reservation_id"]
                done = await call("POST", f"{base}/reservations/{reservation}/checkout",
                                  "/v1/public/venues/{embed_key}/reservations/{id}/checkout",
                                  json={"customer": {"email": email, "first_name": "Plan", "last_name": "Check"}})
                if done.status_code == 201:
                    booking = done.json()["booking"]
                    await call("GET", f"/v1/public/bookings/{booking['reference']}", "/v1/public/bookings/{reference}",
                               params={"email": email})
            again = await call("POST", f"{base}/reservations", "/v1/public/venues/{embed_key}/reservations",
                               json={"session_id": open_sessions[-1]["id"], "spots": 1, "customer_email": email})
            if again.status_code == 201:
                await call("DELETE", f"{base}/reservations/{again.json()['reservation_id']}",
                           "/v1/public/venues/{embed_key}/reservations/{id}")

        login = await call("POST", "/v1/auth/login", json={"email": org["owner_email"], "password": manifest["password"]})
        if login.status_code != 200:
            continue
        staff = {"Authorization": f"Bearer {login.json()['access_token']}"}
        sample = (org.get("bookings") or [{}])[0]
        await call("GET", "/v1/bookings", headers=staff)
        await call("GET", "/v1/bookings", "/v1/bookings?status&from&to", headers=staff,
                   params={"status": "confirmed", "from": (today - timedelta(days=30)).isoformat(),
                           "to": today.isoformat()})
        await call("GET", "/v1/bookings", "/v1/bookings?venue_id", headers=staff, params={"venue_id": venue["id"]})
        for term in filter(None, (sample.get("reference"), sample.get("email"))):
            await call("GET", "/v1/bookings", "/v1/bookings?q", headers=staff, params={"q": term})
            await call("GET", "/v1/customers", "/v1/customers?q", headers=staff, params={"q": term})
        if sample.get("id"):
            await call("GET", f"/v1/bookings/{sample['id']}", "/v1/bookings/{id}", headers=staff)
            await call("GET", f"/v1/bookings/by-reference/{sample['reference']}", "/v1/bookings/by-reference/{ref}",
                       headers=staff)
        await call("GET", "/v1/customers", headers=staff)
        await call("GET", "/v1/sessions", "/v1/sessions?venue_id&from&to", headers=staff,
                   params={"venue_id": venue["id"], **window})
        if sessions:
            await call("GET", f"/v1/sessions/{sessions[0]['id']}", "/v1/sessions/{id}", headers=staff)
        await call("GET", "/v1/dashboard/stats", headers=staff,
                   params={"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()})
        await call("GET", "/v1/activities", headers=staff)
        await call("GET", "/v1/venues", headers=staff)
        await call("GET", "/v1/audit-log", headers=staff)
        await call("GET", "/v1/bookings/export.csv", "/v1/bookings/export.csv?from&to", headers=staff,
                   params={"from": today.isoformat(), "to": (today + timedelta(days=6)).isoformat()})
        if booking:
            await call("POST", f"/v1/bookings/{booking['id']}/check-in", "/v1/bookings/{id}/check-in", headers=staff)
            await call("POST", f"/v1/bookings/{booking['id']}/cancel", "/v1/bookings/{id}/cancel", headers=staff,
                       json={"refund": "policy"})
    started = time.monotonic()
    await worker.run_once(extend=True)
    answers.append((f"jobs: worker.run_once ({time.monotonic() - started:.2f} s)", 0))
    return answers


async def check_plans(manifest: dict, min_rows: int, organizations: int) -> tuple[list[Statement], list[tuple[str, int]]]:
    import httpx
    from sqlalchemy import event

    from bookingtms.app import create_app
    from bookingtms.db.engine import get_engine, get_read_engine

    recorder = StatementRecorder()
    app = create_app()
    async with app.router.lifespan_context(app):
        engines = {get_engine().sync_engine, get_read_engine().sync_engine}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", recorder)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench.local") as client:
                answers = await _drive(client, manifest, organizations)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", recorder)
        statements = list(recorder.statements.values())
        await _explain(statements, await _large_tables(min_rows))
    return statements, answers


def _one_line(sql: str, width: int = 150) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def report_markdown(statements: list[Statement], answers: list[tuple[str, int]], large: list[str], min_rows: int) -> str:
    bad = [s for s in statements if s.seq_scans]
    lines = [
        f"# Query plans ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"{len(statements)} distinct statements from {len(answers)} requests; tables with at least {min_rows:,} rows: "
        f"{', '.join(sorted(large)) or 'none'}.",
        f"**{'FAIL' if bad else 'PASS'}**: {len(bad)} statement(s) scan a large table sequentially.",
        "",
        "| calls | statement | scans | verdict |",
        "|---:|---|---|---|",
    ]
    for st in sorted(statements, key=lambda s: (not s.seq_scans, s.error is None, -s.calls)):
        verdict = "SEQ SCAN: " + ", ".join(st.seq_scans) if st.seq_scans else ("not explained: " + st.error if st.error
                                                                                 else "ok")
        lines.append(f"| {st.calls} | `{_one_line(st.sql).replace('|', '/')}` | {'; '.join(st.scans) or '-'} | "
                     f"{verdict.replace('|', '/')} |")
    lines += ["", "Requests driven (status):", ""]
    lines += [f"- {label}: {status}" for label, status in answers]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    # Every request must reach the database (no cache) and none may be refused for its rate.
    os.environ["BOOKINGTMS_CACHE"] = "0"
    os.environ["BOOKINGTMS_RATE_LIMITS"] = "0"
    os.environ["BOOKINGTMS_RUN_JOBS"] = "0"
    os.environ.setdefault("BOOKINGTMS_LOG_LEVEL", "WARNING")
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from bookingtms.config import get_settings
    from bookingtms.db.embedded import ensure_servers
    from bookingtms.db.migrate import run_migrations

    get_settings.cache_clear()
    settings = ensure_servers(get_settings())
    run_migrations(settings)
    manifest_path = args.manifest or settings.data_dir / "bench" / "manifest.json"
    if not manifest_path.exists():
        print(f"no manifest at {manifest_path}: run `bookingtms bench seed` first", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_path.read_text())

    async def main():
        from bookingtms.db.engine import dispose_engine

        try:
            statements, answers = await check_plans(manifest, args.min_rows, args.organizations)
            return statements, answers, list(await _large_tables(args.min_rows))
        finally:
            await dispose_engine()

    print(f"driving hot endpoints for {args.organizations} organizations and explaining their statements ...",
          flush=True)
    statements, answers, large = asyncio.run(main())
    text = report_markdown(statements, answers, large, args.min_rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plans-latest.md").write_text(text)
    server_errors = [label for label, status in answers if status >= 500]
    bad = [s for s in statements if s.seq_scans]
    for st in bad:
        print(f"SEQ SCAN of {', '.join(st.seq_scans)}: {_one_line(st.sql, 300)}")
    for label in server_errors:
        print(f"5xx from {label}")
    unexplained = [s for s in statements if s.error]
    print(f"{len(statements)} statements explained ({len(unexplained)} could not be), {len(bad)} with a sequential "
          f"scan of a large table; report: {args.out / 'plans-latest.md'}")
    return 1 if bad or server_errors else 0
