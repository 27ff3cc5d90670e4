"""The role hierarchy and the permission matrix: one table, read by every endpoint's check and
printed in the README (`bookingtms permissions`)."""

from __future__ import annotations

ORG_ROLES = ("staff", "manager", "admin", "org-admin", "super-admin")  # lowest to highest
PLATFORM_ROLE = "system-admin"
ALL_ROLES = (PLATFORM_ROLE, *reversed(ORG_ROLES))
ROLE_RANK = {role: rank for rank, role in enumerate(ORG_ROLES, start=1)}

# permission -> the lowest organization role that holds it
PERMISSION_MATRIX: dict[str, str] = {
    "organization.view": "staff",
    "venues.view": "staff",
    "activities.view": "staff",
    "sessions.view": "staff",
    "bookings.view": "staff",
    "bookings.checkin": "staff",
    "customers.view": "staff",
    "bookings.create": "manager",
    "bookings.cancel": "manager",
    "sessions.manage": "manager",
    "customers.manage": "manager",
    # Revenue and occupancy are the business's figures: for those who run the venue, not the front desk.
    "stats.view": "manager",
    "activities.manage": "admin",
    "promo_codes.manage": "admin",
    "users.view": "admin",
    "venues.manage": "org-admin",
    "users.manage": "org-admin",
    "api_keys.manage": "org-admin",
    "audit.view": "org-admin",
    "organization.manage": "super-admin",
}

PLATFORM_PERMISSIONS = (
    "platform.organizations.view",
    "platform.organizations.manage",
    "platform.plans.manage",
    "platform.flags.manage",
    "platform.stats.view",
    "platform.audit.view",
    "platform.access_grants.manage",
)


def permissions_for(role: str) -> list[str]:
    if role == PLATFORM_ROLE:
        return list(PLATFORM_PERMISSIONS)
    rank = ROLE_RANK[role]
    return sorted(p for p, lowest in PERMISSION_MATRIX.items() if ROLE_RANK[lowest] <= rank)


def matrix_markdown() -> str:
    header = "| permission | " + " | ".join(reversed(ORG_ROLES)) + " |"
    rule = "|---" * (len(ORG_ROLES) + 1) + "|"
    rows = [
        f"| `{p}` | " + " | ".join("yes" if ROLE_RANK[r] >= ROLE_RANK[lowest] else "" for r in reversed(ORG_ROLES)) + " |"
        for p, lowest in PERMISSION_MATRIX.items()
    ]
    return "\n".join([header, rule, *rows])
