"""create_app(): middleware, routers, error handlers and the lifespan. Nothing imports it."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text

from bookingtms import __version__, worker
from bookingtms.activities.router import router as activities_router
from bookingtms.api_keys.router import router as api_keys_router
from bookingtms.audit.router import router as audit_router
from bookingtms.auth.router import router as auth_router
from bookingtms.bookings.router import public_router as public_bookings_router
from bookingtms.bookings.router import router as bookings_router
from bookingtms.cache import close_redis, get_redis
from bookingtms.config import get_settings
from bookingtms.customers.router import router as customers_router
from bookingtms.db.engine import dispose_engine, get_engine
from bookingtms.errors import ServiceUnavailable, install_error_handlers
from bookingtms.http.middleware import RequestContextMiddleware
from bookingtms.http.responses import OrjsonResponse
from bookingtms.logs import configure_logging
from bookingtms.platform.router import router as platform_router
from bookingtms.reservations.router import public_router as public_reservations_router
from bookingtms.sessions.router import public_router as public_sessions_router
from bookingtms.sessions.router import router as sessions_router
from bookingtms.users.router import router as users_router
from bookingtms.venues.router import public_router as public_venues_router
from bookingtms.venues.router import router as venues_router


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level)
    run_jobs = os.environ.get("BOOKINGTMS_RUN_JOBS", "1") != "0"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = asyncio.Event()
        jobs = asyncio.create_task(worker.run_forever(settings.job_interval_seconds, stop)) if run_jobs else None
        yield
        stop.set()
        if jobs:
            await jobs
        await close_redis()
        await dispose_engine()

    app = FastAPI(title="BookingTMS", version=__version__, default_response_class=OrjsonResponse, lifespan=lifespan)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    for router in (auth_router, users_router, api_keys_router, audit_router, platform_router, venues_router, activities_router, sessions_router, bookings_router,
                   customers_router, public_venues_router, public_sessions_router, public_reservations_router,
                   public_bookings_router):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz():
        try:
            async with get_engine().connect() as conn:
                await conn.execute(text("SELECT 1"))
            await get_redis().ping()
        except Exception as exc:
            raise ServiceUnavailable(f"Not ready: {type(exc).__name__}", code="not_ready") from None
        return {"status": "ready"}

    return app
