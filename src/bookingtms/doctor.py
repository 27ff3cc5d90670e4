"""`bookingtms doctor`: checks the capacity invariant on every session, that customers' totals
match their bookings, that the dashboard's daily roll-ups match their bookings and sessions, and
that every audit chain is intact. Runs as the owner (sees every tenant)."""

from __future__ import annotations

from sqlalchemy import create_engine, pool, text

from bookingtms.config import Settings
from bookingtms.db.urls import owner_url

CAPACITY_BREACHES = text("""
    WITH held AS (
      SELECT organization_id, session_id, sum(spots_reserved) AS spots
        FROM slot_reservations WHERE status = 'held' GROUP BY 1, 2
    ), booked AS (
      SELECT organization_id, session_id, sum(guest_count) AS guests
        FROM bookings WHERE status <> 'cancelled' GROUP BY 1, 2
    )
    SELECT s.organization_id, s.id, s.capacity_total, s.capacity_remaining,
           coalesce(h.spots, 0) AS held, coalesce(b.guests, 0) AS booked
      FROM activity_sessions s
      LEFT JOIN held h ON h.organization_id = s.organization_id AND h.session_id = s.id
      LEFT JOIN booked b ON b.organization_id = s.organization_id AND b.session_id = s.id
     WHERE s.capacity_remaining <> s.capacity_total - coalesce(h.spots, 0) - coalesce(b.guests, 0)
""")

CUSTOMER_BREACHES = text("""
    SELECT c.organization_id, c.id, c.total_bookings, c.total_spent,
           count(b.id) AS bookings, coalesce(sum(b.total_amount), 0) AS spent
      FROM customers c
      LEFT JOIN bookings b ON b.organization_id = c.organization_id AND b.customer_id = c.id AND b.status <> 'cancelled'
     GROUP BY c.organization_id, c.id
    HAVING c.total_bookings <> count(b.id) OR c.total_spent <> coalesce(sum(b.total_amount), 0)
""")


# The dashboard's daily roll-ups (kept by triggers) against a recomputation from bookings and
# sessions: daily_stats_recomputed(), which rebuild_daily_stats() writes. A stored row of
# zeros means the same as no row (coalesce makes a missing row zeros).
STATS_FIGURES = ("bookings", "guests", "revenue_amount", "cancellations", "capacity", "occupancy_guests")


def _figures(alias: str) -> str:
    return "ARRAY[" + ", ".join(f"coalesce({alias}.{f}, 0)" for f in STATS_FIGURES) + "]::bigint[]"


STATS_BREACHES = text(f"""
    SELECT organization_id, day, venue_id, activity_id, currency, {_figures("s")} AS stored,
           {_figures("e")} AS expected
      FROM daily_stats s FULL JOIN daily_stats_recomputed() e USING (organization_id, day, venue_id, activity_id, currency)
     WHERE {_figures("s")} <> {_figures("e")}
     ORDER BY organization_id, day, venue_id, activity_id, currency
""")
MAX_STATS_LINES = 50


def stats_problems(rows) -> list[str]:
    """One line per wrong roll-up row (at most MAX_STATS_LINES), naming the figures that differ."""
    lines = []
    for r in rows[:MAX_STATS_LINES]:
        diffs = ", ".join(f"{name} {a} (should be {b})" for name, a, b in zip(STATS_FIGURES, r.stored, r.expected)
                          if a != b)
        lines.append(f"BREACH daily stats of org {r.organization_id}, {r.day}, venue {r.venue_id}, activity "
                     f"{r.activity_id}, {r.currency}: {diffs} (rebuild_daily_stats() recomputes them)")
    if len(rows) > MAX_STATS_LINES:
        lines.append(f"BREACH daily stats: ... and {len(rows) - MAX_STATS_LINES} more wrong rows")
    return lines


# Every audit row, recomputed from its stored fields and stored prev_hash with the same SQL
# function the trigger used, and compared with its predecessor in chain order. One chain per
# organization, one for the platform (organization_id NULL), partitioned as the chain's unique index is.
# A changed row no longer matches its own hash (or, if its hash was recomputed too, the next row's
# link breaks); a deleted row leaves a gap in chain_seq. (Removing the newest rows of a chain leaves
# no trace inside the chain: that needs an outside copy of the last hash.)
AUDIT_BREACHES = text("""
    WITH chained AS (
      SELECT id, organization_id, chain_seq, prev_hash, row_hash,
             lag(row_hash) OVER w AS pred_hash, lag(chain_seq) OVER w AS pred_seq,
             audit_row_hash(prev_hash, chain_seq, organization_id, actor_id, actor_type, actor_label, action,
                            target_type, target_id, request_id, ip, changes, created_at) AS computed
        FROM audit_log
      WINDOW w AS (PARTITION BY coalesce(organization_id, '00000000-0000-0000-0000-000000000000'::uuid)
                   ORDER BY chain_seq)
    )
    SELECT organization_id, id, chain_seq, pred_seq,
           row_hash IS DISTINCT FROM computed AS changed,
           chain_seq IS DISTINCT FROM coalesce(pred_seq, 0) + 1 AS gap,
           prev_hash IS DISTINCT FROM coalesce(pred_hash, '') AS broken
      FROM chained
     WHERE row_hash IS DISTINCT FROM computed
        OR chain_seq IS DISTINCT FROM coalesce(pred_seq, 0) + 1
        OR prev_hash IS DISTINCT FROM coalesce(pred_hash, '')
     ORDER BY organization_id NULLS FIRST, chain_seq NULLS LAST, id
""")

AUDIT_TOTALS = text("SELECT count(*) AS rows, count(DISTINCT coalesce(organization_id::text, '')) AS chains "
                    "FROM audit_log")

MAX_LINES_PER_CHAIN = 20


def audit_chain_problems(rows) -> list[str]:
    """One readable line per damaged row, at most MAX_LINES_PER_CHAIN per chain."""
    lines: list[str] = []
    shown: dict[str, int] = {}
    for r in rows:
        chain = f"org {r.organization_id}" if r.organization_id else "platform"
        where = f"audit chain {chain}"
        if r.chain_seq is None:
            problem = f"row id {r.id} has no place in the chain (chain_seq is empty)"
        else:
            parts = []
            if r.gap:
                first = (r.pred_seq or 0) + 1
                missing = f"seq {first}" if first == r.chain_seq - 1 else f"seq {first}..{r.chain_seq - 1}"
                parts.append(f"{missing} missing before seq {r.chain_seq} (rows deleted)" if first < r.chain_seq
                             else f"seq {r.chain_seq} follows seq {r.pred_seq} (rows renumbered)")
            elif r.broken:
                parts.append(f"seq {r.chain_seq}: link broken (prev_hash differs from seq {r.pred_seq}'s hash)")
            if r.changed:
                parts.append(f"seq {r.chain_seq} (row id {r.id}): contents changed (hash does not match)")
            problem = "; ".join(parts)
        shown[chain] = shown.get(chain, 0) + 1
        if shown[chain] <= MAX_LINES_PER_CHAIN:
            lines.append(f"BREACH {where}: {problem}")
    for chain, count in shown.items():
        if count > MAX_LINES_PER_CHAIN:
            lines.append(f"BREACH audit chain {chain}: ... and {count - MAX_LINES_PER_CHAIN} more damaged rows")
    return lines


def run_doctor(settings: Settings, echo=print) -> int:
    """Returns the number of breaches found (0 = healthy)."""
    engine = create_engine(owner_url(settings), poolclass=pool.NullPool)
    with engine.connect() as conn:
        sessions = conn.execute(text("SELECT count(*) FROM activity_sessions")).scalar_one()
        capacity = conn.execute(CAPACITY_BREACHES).all()
        customers = conn.execute(CUSTOMER_BREACHES).all()
        customers_count = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
        stats = conn.execute(STATS_BREACHES).all()
        stats_count = conn.execute(text("SELECT count(*) FROM daily_stats")).scalar_one()
        audit = conn.execute(AUDIT_BREACHES).all()
        audit_totals = conn.execute(AUDIT_TOTALS).one()
    engine.dispose()
    for r in capacity:
        echo(f"BREACH session {r.id} (org {r.organization_id}): capacity_remaining={r.capacity_remaining} but "
             f"total {r.capacity_total} - held {r.held} - booked {r.booked} = {r.capacity_total - r.held - r.booked}")
    for r in customers:
        echo(f"BREACH customer {r.id} (org {r.organization_id}): totals {r.total_bookings}/{r.total_spent} but "
             f"bookings say {r.bookings}/{r.spent}")
    for line in stats_problems(stats) + audit_chain_problems(audit):
        echo(line)
    breaches = len(capacity) + len(customers) + len(stats) + len(audit)
    echo(f"doctor: checked {sessions} sessions, {customers_count} customers, {stats_count} daily stats rows, "
         f"{audit_totals.rows} audit rows in {audit_totals.chains} chains: "
         f"{'OK' if not breaches else f'{breaches} breach(es)'}")
    return breaches
