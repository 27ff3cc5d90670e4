"""Feature flags: the one evaluation the code uses.

    if await flags.is_enabled(db, "new-checkout", organization_id): ...

Rules, in order: an unknown or disabled flag is off; an organization on the flag's whitelist has
it on; otherwise it is on for the organizations whose bucket (a stable hash of the flag's name and
the organization's id, 0..99) is below `rollout_percent`. The bucket never changes, so raising the
percentage only adds organizations and lowering it only removes them; and each flag splits the
organizations differently (the name is in the hash), so 10% of one flag is not the same 10% as
another's. A flag's name cannot be changed, because that would reshuffle its buckets."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.models import feature_flags


def bucket(name: str, organization_id: uuid.UUID | str) -> int:
    """0..99, the same for the same (flag, organization) in every process and release."""
    key = f"{name}\x1f{uuid.UUID(str(organization_id))}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100


def evaluate(*, name: str, enabled: bool, rollout_percent: int, org_whitelist: Iterable[uuid.UUID | str],
             organization_id: uuid.UUID | str | None) -> bool:
    if not enabled:
        return False
    if organization_id is None:  # no organization to place in a bucket: only a full rollout applies
        return rollout_percent >= 100
    org = uuid.UUID(str(organization_id))
    if any(uuid.UUID(str(o)) == org for o in org_whitelist or ()):
        return True
    return bucket(name, org) < rollout_percent


async def is_enabled(db: AsyncConnection, name: str, organization_id: uuid.UUID | str | None) -> bool:
    """Whether flag `name` is on for the organization (works in any tenant or platform context:
    flags are readable by every context)."""
    f = feature_flags.c
    row = (await db.execute(select(f.enabled, f.rollout_percent, f.org_whitelist).where(f.name == name))).first()
    if row is None:
        return False
    return evaluate(name=name, enabled=row.enabled, rollout_percent=row.rollout_percent,
                    org_whitelist=row.org_whitelist or (), organization_id=organization_id)
