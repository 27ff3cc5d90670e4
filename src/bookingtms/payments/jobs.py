"""Lapsed online payments: a pending_payment booking whose payment_expires_at has passed (the
expiry webhook was missed or is late) is released, one tenant transaction per organization."""

from __future__ import annotations

from bookingtms.bookings import service as bookings_service
from bookingtms.db.engine import for_each_organization


async def release_lapsed_payments(max_organizations: int = 1000) -> int:
    return await for_each_organization("release_lapsed_payments", "organizations_with_lapsed_payments(:n)",
                                       {"n": max_organizations}, bookings_service.release_lapsed)
