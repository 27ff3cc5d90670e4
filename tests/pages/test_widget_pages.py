"""The widget's loader and page, without a browser (tests/e2e drives them in Chromium): what they
serve, that any site may frame them, the checkout's link to the customer's booking page, and where
Stripe sends the customer back to."""

from __future__ import annotations

import html
import json
import re
import uuid
from urllib.parse import urlsplit

from bookingtms.config import get_settings
from tests.factories import future_session, hold, make_activity, make_tenant
from tests.payments.conftest import completed, event, make_stripe_org, post_event, stripe_api, stripe_settings  # noqa: F401

CONFIG = re.compile(r'data-config="([^"]*)"')


def widget_config(page: str) -> dict:
    found = CONFIG.search(page)
    assert found, "the widget page carries no data-config"
    return json.loads(html.unescape(found.group(1)))


async def test_loader_is_cacheable_javascript_that_frames_the_widget_of_its_own_key(client):
    response = await client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "max-age=300" in response.headers["cache-control"]
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    body = response.text
    # The iframe's address is the script's own origin + /widget/ + its data-embed-key ...
    assert 'getAttribute("data-embed-key")' in body
    assert 'origin + "/widget/" + encodeURIComponent(key)' in body
    assert "new URL(script.src" in body
    # ... and heights are believed only from that iframe, with that origin.
    assert "event.origin !== origin || event.source !== frame.contentWindow" in body
    # A browser that has it revalidates cheaply.
    again = await client.get("/widget.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_widget_page_shows_the_venue_and_its_bookable_activities(client, tenant):
    room = await make_activity(client, tenant, capacity=8, min_players=2, max_players=6, price_amount=3250,
                               description="Escape the lighthouse before the storm.")
    hidden = await make_activity(client, tenant, capacity=4, is_active=False)
    response = await client.get(f"/widget/{tenant.embed_key}")
    assert response.status_code == 200, response.text
    page = response.text
    venue = (await client.get(f"/v1/public/venues/{tenant.embed_key}")).json()["venue"]
    assert html.escape(venue["name"]) in page
    assert room["name"] in page and "Escape the lighthouse before the storm." in page
    assert "32.50 USD per person" in page and "60 minutes" in page and "2 to 6" in page
    assert hidden["name"] not in page  # not bookable: not offered
    assert "America/New_York" in page
    assert "/static/js/widget-app.js?v=" in page and "/static/css/widget.css?v=" in page
    assert "<script>" not in page and 'style="' not in page  # CSP: no inline script or style
    assert "<img" not in page  # no pictures uploaded: none shown
    assert f'Choose dates<span class="visually-hidden"> for {room["name"]}</span>' in page
    config = widget_config(page)
    assert config["embedKey"] == tenant.embed_key and config["api"] == f"/v1/public/venues/{tenant.embed_key}"
    assert config["timezone"] == "America/New_York" and config["payment"] == "offline"
    assert config["requirePhone"] is False
    [offered] = config["activities"]
    assert offered == {"id": room["id"], "name": room["name"], "min_players": 2, "max_players": 6,
                       "price_amount": 3250, "currency": "USD", "duration_minutes": 60}
    # Any site may frame it.
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    assert "x-frame-options" not in response.headers


async def test_venue_that_requires_a_phone_says_so_to_the_widget(client, tenant):
    await make_activity(client, tenant)
    patched = await client.patch(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers,
                                 json={"settings": {"require_phone": True}})
    assert patched.status_code == 200, patched.text
    page = (await client.get(f"/widget/{tenant.embed_key}")).text
    assert widget_config(page)["requirePhone"] is True
    # ... and the checkout insists, whoever calls it.
    activity = widget_config(page)["activities"][0]
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=1, email="no.phone@example.com")
    path = f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}/checkout"
    customer = {"email": "no.phone@example.com", "first_name": "Noa", "last_name": "Phone"}
    refused = await client.post(path, json={"customer": customer})
    assert refused.status_code == 422 and refused.json()["code"] == "phone_required"
    assert refused.json()["errors"] == [{"field": "customer.phone",
                                         "message": "This venue needs a phone number to reach you on the day."}]
    booked = await client.post(path, json={"customer": {**customer, "phone": "+1 555 0100"}})
    assert booked.status_code == 201, booked.text  # the refusal left the hold as it was


async def test_unknown_key_is_a_framable_404_page(client):
    response = await client.get(f"/widget/{'x' * 24}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No venue has this embed key." in response.text
    assert 'class="topbar"' not in response.text  # the widget's own frame, not the site's header
    assert "/static/js/widget-app.js" in response.text  # it still reports its height to the loader
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    assert "x-frame-options" not in response.headers


async def test_suspended_business_shows_a_message_instead_of_the_widget(client, platform_admin):
    org = await make_tenant(client, platform_admin)
    await make_activity(client, org)
    suspended = await client.patch(f"/v1/platform/organizations/{org.organization_id}", headers=platform_admin.headers,
                                   json={"status": "suspended"})
    assert suspended.status_code == 200, suspended.text
    response = await client.get(f"/widget/{org.embed_key}")
    assert response.status_code == 403
    assert "This business is not taking bookings at the moment." in response.text
    assert "data-config" not in response.text


async def test_checkout_answers_the_link_to_the_customers_booking_page(client, tenant):
    activity = await make_activity(client, tenant, price_amount=2000)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=2, email="Ana.Page@Example.com")
    assert held.status_code == 201, held.text
    done = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}/checkout",
                             json={"customer": {"email": "Ana.Page@Example.com", "first_name": "Ana", "last_name": "Page"}})
    assert done.status_code == 201, done.text
    body = done.json()
    manage_url = body["manage_url"]
    assert manage_url.startswith(get_settings().base_url.rstrip("/") + "/my-booking/")
    page = await client.get(urlsplit(manage_url).path)
    assert page.status_code == 200, page.text
    assert body["booking"]["reference"] in page.text and "40.00 USD" in page.text


async def test_stripe_sends_the_customer_back_to_their_booking_page(client, tenant, stripe_api, owner_engine):
    account = make_stripe_org(owner_engine, tenant.organization_id)
    activity = await make_activity(client, tenant, price_amount=4100)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=1, email="sam@example.com")
    assert held.status_code == 201, held.text
    done = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}/checkout",
                             json={"customer": {"email": "sam@example.com", "first_name": "Sam", "last_name": "Stripe"}})
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["booking"]["status"] == "pending_payment" and body["payment"]["checkout_url"]
    [sent] = stripe_api.sessions
    assert sent["success_url"] == body["manage_url"] + "?payment=success"
    assert sent["cancel_url"] == body["manage_url"] + "?payment=cancelled"

    back = urlsplit(sent["success_url"])
    waiting = await client.get(f"{back.path}?{back.query}")
    assert waiting.status_code == 200, waiting.text
    assert "We are confirming your payment" in waiting.text  # the webhook has not arrived yet
    assert '<meta http-equiv="refresh" content="5">' in waiting.text  # and looks again by itself

    cancelled = urlsplit(sent["cancel_url"])
    page = await client.get(f"{cancelled.path}?{cancelled.query}")
    assert page.status_code == 200 and "The payment was not completed" in page.text

    payload = event("checkout.session.completed", completed(sent["id"], body["booking"]["id"], tenant.organization_id,
                                                              4100, f"pi_{uuid.uuid4().hex[:12]}"), account)
    assert (await post_event(client, payload)).status_code == 200
    paid = await client.get(f"{back.path}?{back.query}")
    assert "your payment was received and your booking is confirmed" in paid.text
    assert 'http-equiv="refresh"' not in paid.text
    assert "Paid" in paid.text
