"""`bookingtms demo`: a demo organization with a venue, activities and generated sessions.
Safe to run again: it reuses what is already there."""

from __future__ import annotations

from sqlalchemy import select, text

from bookingtms.activities import service as activities_service
from bookingtms.activities.schemas import ActivityCreate
from bookingtms.auth.service import create_platform_admin
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.models import venues
from bookingtms.platform import service as platform_service
from bookingtms.platform.schemas import OrganizationCreate

ADMIN = ("admin@demo.bookingtms.dev", "DemoAdmin!2026")
OWNER = ("owner@demo.bookingtms.dev", "DemoOwner!2026")

ACTIVITIES = [
    dict(name="The Lost Pharaoh", category="escape-room", duration_minutes=60, capacity=8, min_players=2,
         max_players=8, price_amount=3500,
         schedule={"weekly": [{"days": ["mon", "tue", "wed", "thu", "fri"], "times": ["17:00", "19:00", "21:00"]},
                              {"days": ["sat", "sun"], "times": ["10:00", "12:00", "14:00", "16:00", "18:00", "20:00"]}]}),
    dict(name="Harbour Walking Tour", category="tour", duration_minutes=90, capacity=20, min_players=1,
         max_players=10, price_amount=2500,
         schedule={"weekly": [{"days": ["mon", "wed", "fri", "sat", "sun"], "times": ["10:30", "14:30"]}]}),
    dict(name="Pottery for Beginners", category="class", duration_minutes=120, capacity=12, min_players=1,
         max_players=4, price_amount=5500, schedule={"weekly": [{"days": ["tue", "thu", "sat"], "times": ["18:30"]}]}),
]


async def ensure_demo() -> dict[str, str]:
    async with tenant_transaction(DbContext(is_platform=True)) as db:
        admin = (await db.execute(text("SELECT * FROM find_login_user(:e)"), {"e": ADMIN[0]})).first()
        owner = (await db.execute(text("SELECT * FROM find_login_user(:e)"), {"e": OWNER[0]})).first()
    admin_id = admin.user_id if admin else await create_platform_admin(ADMIN[0], ADMIN[1], "Demo Platform Admin")
    if owner is None:
        async with tenant_transaction(DbContext(user_id=admin_id, is_platform=True)) as db:
            created = await platform_service.create_organization(db, admin_id, OrganizationCreate(
                name="Demo Escapes", slug="demo-escapes", plan="pro", timezone="America/New_York",
                owner={"email": OWNER[0], "full_name": "Demo Owner", "password": OWNER[1]}))
        org_id, venue_id = created["organization"]["id"], created["venue"]["id"]
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            for spec in ACTIVITIES:
                await activities_service.create_activity(db, org_id, ActivityCreate(venue_id=venue_id, **spec))
    else:
        org_id = owner.organization_id
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        embed_key = (await db.execute(select(venues.c.embed_key).where(venues.c.organization_id == org_id)
                                      .order_by(venues.c.created_at).limit(1))).scalar_one()
    return {"admin_email": ADMIN[0], "admin_password": ADMIN[1], "owner_email": OWNER[0],
            "owner_password": OWNER[1], "embed_key": embed_key}
