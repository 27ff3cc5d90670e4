"""The embeddable booking widget.

* `GET /widget.js`: the loader a business pastes into its own site
  (`<script src="https://HOST/widget.js" data-embed-key="KEY" async></script>`). It inserts an
  iframe of `/widget/KEY` and keeps the iframe as tall as the widget's content (postMessage).
* `GET /widget/{embed_key}`: the widget itself, framable by any site (http/security.py). The page
  is rendered with the venue and its activities; static/js/widget-app.js then runs the booking flow
  against the public JSON API of this same origin (availability, live events, holds, checkout),
  so the widget and any other API client book through exactly the same code.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from bookingtms.db.engine import read_transaction
from bookingtms.http.public import public_venue
from bookingtms.payments import providers
from bookingtms.venues import service as venues_service
from bookingtms.web.templating import STATIC, render

router = APIRouter()

LOADER_MAX_AGE = 300  # the loader's URL carries no version: caches keep it only briefly


@lru_cache(maxsize=1)
def _loader() -> tuple[bytes, str]:
    body = (STATIC / "js" / "widget.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.get("/widget.js")
async def loader(request: Request) -> Response:
    body, etag = _loader()
    headers = {"Cache-Control": f"public, max-age={LOADER_MAX_AGE}", "ETag": etag}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/javascript", headers=headers)


async def _public_info(v) -> dict:
    """The venue and its bookable activities: the same cached answer as GET /v1/public/venues/{key}."""
    return orjson.loads(await venues_service.public_page_json(v))


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@router.get("/widget/{embed_key}")
async def widget_page(request: Request, embed_key: str):
    v = await public_venue(embed_key)  # 404 unknown key, 403 suspended business: HTML error pages
    info = await _public_info(v)
    async with read_transaction(v.db_context()) as db:
        venue = await venues_service.get_venue(db, v.organization_id, v.venue_id)
        org = await providers.organization(db, v.organization_id)
    settings = venue.get("settings") or {}
    provider = providers.provider_named(org.payment_provider).name
    activities = info["activities"]
    config = {
        "embedKey": embed_key,
        "api": f"/v1/public/venues/{embed_key}",
        "venueName": info["venue"]["name"],
        "timezone": info["venue"]["timezone"],
        "payment": provider,
        "requirePhone": _truthy(settings.get("require_phone", False)),
        "activities": [{k: a.get(k) for k in ("id", "name", "min_players", "max_players", "price_amount",
                                                "currency", "duration_minutes")} for a in activities],
    }
    return render(request, "widget/page.html", venue=info["venue"], activities=activities, provider=provider,
                  config=json.dumps(config, separators=(",", ":")), embed_key=embed_key)
