"""`bookingtms doctor`: checks the capacity invariant on every session, and that customers'
totals match their bookings. Runs as the owner (sees every tenant)."""

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


def run_doctor(settings: Settings, echo=print) -> int:
    """Returns the number of breaches found (0 = healthy)."""
    engine = create_engine(owner_url(settings), poolclass=pool.NullPool)
    with engine.connect() as conn:
        sessions = conn.execute(text("SELECT count(*) FROM activity_sessions")).scalar_one()
        capacity = conn.execute(CAPACITY_BREACHES).all()
        customers = conn.execute(CUSTOMER_BREACHES).all()
    engine.dispose()
    for r in capacity:
        echo(f"BREACH session {r.id} (org {r.organization_id}): capacity_remaining={r.capacity_remaining} but "
             f"total {r.capacity_total} - held {r.held} - booked {r.booked} = {r.capacity_total - r.held - r.booked}")
    for r in customers:
        echo(f"BREACH customer {r.id} (org {r.organization_id}): totals {r.total_bookings}/{r.total_spent} but "
             f"bookings say {r.bookings}/{r.spent}")
    breaches = len(capacity) + len(customers)
    echo(f"doctor: checked {sessions} sessions: {'OK' if not breaches else f'{breaches} breach(es)'}")
    return breaches
