"""Pictures of activities and venues: uploaded from the dashboard, checked (type, size, pixels),
resized, kept under the data dir or in an S3-compatible bucket, served with a year-long cache, and
shown in the public venue data the widget reads."""

from __future__ import annotations

import io
import uuid

import boto3
import pytest
from PIL import Image

from bookingtms.config import get_settings
from tests.auth.conftest import make_staff
from tests.factories import PASSWORD, make_activity, make_tenant
from tests.pages.helpers import PageClient

LONG_CACHE = "public, max-age=31536000, immutable"


def png(width: int, height: int, color=(200, 40, 40, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg_from_a_phone(width: int, height: int) -> bytes:
    """A landscape-stored JPEG whose EXIF says 'rotate 90°' (a phone held upright), with a GPS
    position and a camera serial in its metadata."""
    image = Image.new("RGB", (width, height), (20, 90, 200))
    exif = Image.Exif()
    exif[0x0112] = 6            # Orientation: rotate 90° clockwise to show
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS IFD
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def media_dir():
    return get_settings().data_dir / "media"


async def signed_in(app, email: str) -> PageClient:
    browser = PageClient(app)
    await browser.sign_in(email, PASSWORD)
    return browser


async def upload(browser: PageClient, path: str, name: str, data: bytes, content_type: str, next_url: str = "/admin"):
    return await browser.post(path, {"next": next_url}, files={"image": (name, data, content_type)})


async def fetch_image(client, url: str):
    response = await client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response, Image.open(io.BytesIO(response.content))


async def test_a_png_and_a_jpeg_are_resized_served_for_a_year_and_shown_in_the_public_venue_data(app, client, tenant):
    activity = await make_activity(client, tenant)
    public = f"/v1/public/venues/{tenant.embed_key}"
    before = (await client.get(public)).json()  # the public page is cached now: an upload must refresh it
    assert [a["image_url"] for a in before["activities"]] == [None] and before["venue"]["image_url"] is None

    async with await signed_in(app, tenant.owner_email) as browser:
        page = f"/admin/activities/{activity['id']}"
        sent = await upload(browser, f"/admin/activities/{activity['id']}/image", "poster.png", png(2400, 1200),
                            "image/png", next_url=page)
        assert sent.status_code == 303 and sent.headers["location"] == page
        assert "Picture%20saved" in sent.headers["set-cookie"]

        data = (await client.get(public)).json()
        url = data["activities"][0]["image_url"]
        assert url and url.startswith(f"/media/{tenant.organization_id}/") and url.endswith(".webp")
        widget = await client.get(f"/widget/{tenant.embed_key}")  # the widget reads the same public data
        assert widget.status_code == 200 and f'src="{url}"' in widget.text
        served, image = await fetch_image(client, url)
        assert image.format == "WEBP" and image.size == (1600, 800)
        assert served.headers["content-type"] == "image/webp"
        assert served.headers["cache-control"] == LONG_CACHE
        assert served.headers["etag"]
        again = await client.get(url, headers={"If-None-Match": served.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = await client.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(served.content))
        _, thumb = await fetch_image(client, url.replace(".webp", "-thumb.webp"))
        assert thumb.size == (400, 200)

        # A phone photo: turned upright, resized, its EXIF (GPS, serial) gone.
        sent = await upload(browser, f"/admin/venues/{tenant.venue_id}/image", "IMG_0001.JPG",
                            jpeg_from_a_phone(3000, 2000), "image/jpeg", next_url="/admin/settings?tab=venue")
        assert sent.status_code == 303 and sent.headers["location"] == "/admin/settings?tab=venue"
        venue_url = (await client.get(public)).json()["venue"]["image_url"]
        served, image = await fetch_image(client, venue_url)
        assert image.format == "WEBP" and image.size == (1067, 1600)  # portrait now, long side 1600
        assert served.headers["cache-control"] == LONG_CACHE
        assert not image.getexif() and b"SERIAL-12345" not in served.content
        assert image.getpixel((500, 800))[:3] == pytest.approx((20, 90, 200), abs=8)

        # The staff API shows it too, and the change is in the organization's audit trail.
        staff_view = (await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)).json()
        assert staff_view["image_url"] == url
        trail = (await client.get("/v1/audit-log", headers=tenant.headers,
                                  params={"action": "activity.updated", "target": activity["id"]})).json()["items"]
        assert trail[0]["changes"] == {"image_url": {"from": None, "to": url}}

        # Removing: the public data forgets it and the files go (no other row uses them).
        removed = await browser.post(f"/admin/activities/{activity['id']}/image/remove", {"next": page})
        assert removed.status_code == 303 and removed.headers["location"] == page
        assert (await client.get(public)).json()["activities"][0]["image_url"] is None
        assert (await client.get(url)).status_code == 404


async def test_the_same_picture_on_two_activities_survives_removing_it_from_one(app, client, tenant):
    first, second = await make_activity(client, tenant), await make_activity(client, tenant)
    picture = png(300, 300, (10, 200, 10, 255))
    async with await signed_in(app, tenant.owner_email) as browser:
        for activity in (first, second):
            assert (await upload(browser, f"/admin/activities/{activity['id']}/image", "a.png", picture,
                                 "image/png")).status_code == 303
        urls = {(await client.get(f"/v1/activities/{a['id']}", headers=tenant.headers)).json()["image_url"]
                for a in (first, second)}
        assert len(urls) == 1  # content-addressed: one file
        url = urls.pop()
        await browser.post(f"/admin/activities/{first['id']}/image/remove", {"next": "/admin"})
        assert (await client.get(url)).status_code == 200  # still the second one's picture


async def test_files_that_are_not_acceptable_pictures_are_refused_and_nothing_is_stored(app, client):
    from tests.factories import make_platform_admin

    tenant = await make_tenant(client, await make_platform_admin(client))
    activity = await make_activity(client, tenant)
    path = f"/admin/activities/{activity['id']}/image"
    gif = io.BytesIO()
    Image.new("RGB", (50, 50)).save(gif, "GIF")
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, "PNG")  # 144 megapixels in a few kilobytes
    assert len(bomb.getvalue()) < 200_000
    truncated = png(800, 600)[:400]
    cases = [
        ("notes.png", b"This is a plain text file, whatever its name says.\n" * 20, "image/png", 422, "not a picture"),
        ("photo.png", truncated, "image/png", 422, "not a picture"),
        ("anim.gif", gif.getvalue(), "image/gif", 422, "GIF pictures are not accepted"),
        ("huge.png", png(10, 10) + b"\0" * (6 * 1024 * 1024), "image/png", 413, "larger than 5 MB"),
        ("bomb.png", bomb.getvalue(), "image/png", 422, "more than we accept"),
        ("empty.png", b"", "image/png", 422, "The file is empty"),
    ]
    async with await signed_in(app, tenant.owner_email) as browser:
        for name, data, content_type, status, message in cases:
            response = await upload(browser, path, name, data, content_type)
            assert response.status_code == status, (name, response.status_code, response.text[:300])
            assert response.headers["content-type"].startswith("text/html")
            assert message in response.text, (name, response.text)
    assert not (media_dir() / tenant.organization_id).exists()
    stored = (await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)).json()
    assert stored["image_url"] is None


async def test_a_body_over_the_limit_is_refused_before_it_is_read(app, tenant):
    async with await signed_in(app, tenant.owner_email) as browser:
        csrf = await browser.csrf()

        async def endless():  # a chunked body (no Content-Length) that would go on for 50 MB
            yield f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'.encode()
            yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n' \
                  b"Content-Type: image/png\r\n\r\n"
            for _ in range(50):
                yield b"\0" * (1024 * 1024)

        sent = 0

        async def counted():
            nonlocal sent
            async for chunk in endless():
                sent += len(chunk)
                yield chunk

        response = await browser.http.post(f"/admin/venues/{tenant.venue_id}/image", content=counted(),
                                           headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413 and "larger than 5 MB" in response.text
        assert sent < 8 * 1024 * 1024  # stopped soon after the limit, not after 50 MB
        declared = await browser.http.post(f"/admin/venues/{tenant.venue_id}/image", content=b"x" * 100,
                                           headers={"Content-Type": "multipart/form-data; boundary=b",
                                                    "Content-Length": str(40 * 1024 * 1024)})
        assert declared.status_code == 413


async def test_another_organization_cannot_touch_this_picture_and_staff_need_the_permission(app, client, tenant,
                                                                                           platform_admin):
    activity = await make_activity(client, tenant)
    other = await make_tenant(client, platform_admin)
    async with await signed_in(app, other.owner_email) as intruder:
        for path in (f"/admin/activities/{activity['id']}/image", f"/admin/venues/{tenant.venue_id}/image"):
            response = await upload(intruder, path, "x.png", png(100, 100), "image/png")
            assert response.status_code == 404, response.text
            assert (await intruder.post(path + "/remove", {"next": "/admin"})).status_code == 404
    assert not (media_dir() / other.organization_id).exists()
    manager = await make_staff(tenant, "manager")  # may run the day, not change the catalogue
    async with await signed_in(app, manager.email) as browser:
        response = await upload(browser, f"/admin/activities/{activity['id']}/image", "x.png", png(100, 100),
                                "image/png")
        assert response.status_code == 403 and "activities.manage" in response.text
    async with await signed_in(app, tenant.owner_email) as owner:
        # No CSRF token: refused before anything is read or stored.
        forged = await owner.http.post(f"/admin/activities/{activity['id']}/image", data={"next": "/admin"},
                                       files={"image": ("x.png", png(100, 100), "image/png")})
        assert forged.status_code == 403
        # `next` never leaves the site.
        sent = await upload(owner, f"/admin/activities/{activity['id']}/image", "x.png", png(100, 100), "image/png",
                            next_url="//evil.example/x")
        assert sent.status_code == 303 and sent.headers["location"] == f"/admin/activities/{activity['id']}"
    assert (await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)).json()["image_url"]


async def test_media_paths_outside_the_store_are_plain_404s(client, settings):
    probe = settings.data_dir / "traversal-probe"  # a file beside the store that must never be served
    probe.write_text("TOP-SECRET-PROBE")
    (settings.data_dir / "media").mkdir(parents=True, exist_ok=True)
    org = uuid.uuid4()
    for path in ("/media/../traversal-probe", "/media/..%2Ftraversal-probe", "/media/%2e%2e/traversal-probe",
                 f"/media/{org}/..%2F..%2Ftraversal-probe", "/media/traversal-probe", f"/media/{org}/{'a' * 64}.webp",
                 f"/media/{org}/{'a' * 64}.webp/..%2F..%2F..%2Ftraversal-probe", "/media/", "/media/%00",
                 f"/media/{org}/{'a' * 64}.png"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "TOP-SECRET-PROBE" not in response.text
        assert not response.headers["content-type"].startswith("text/html"), path  # not a page: problem+json


async def test_pictures_go_to_an_s3_bucket_when_one_is_configured(app, client, tenant, monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
                            "AWS_SESSION_TOKEN": "", "AWS_PROFILE": ""}.items():
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        bucket = f"pictures-{uuid.uuid4().hex[:8]}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        settings = get_settings()
        monkeypatch.setattr(settings, "s3_bucket", bucket)
        monkeypatch.setattr(settings, "s3_endpoint_url", endpoint)
        monkeypatch.setattr(settings, "s3_region", "us-east-1")

        activity = await make_activity(client, tenant)
        async with await signed_in(app, tenant.owner_email) as browser:
            sent = await upload(browser, f"/admin/activities/{activity['id']}/image", "p.png", png(2000, 500),
                                "image/png")
            assert sent.status_code == 303, sent.text
        url = (await client.get(f"/v1/public/venues/{tenant.embed_key}")).json()["activities"][0]["image_url"]
        key = url.removeprefix("/media/")
        stored = s3.get_object(Bucket=bucket, Key=key)
        assert stored["ContentType"] == "image/webp" and stored["CacheControl"] == LONG_CACHE
        assert s3.head_object(Bucket=bucket, Key=key.replace(".webp", "-thumb.webp"))
        assert not (media_dir() / tenant.organization_id).exists()  # nothing on local disk
        served, image = await fetch_image(client, url)  # proxied through /media from the bucket
        assert image.size == (1600, 400) and served.headers["cache-control"] == LONG_CACHE
        assert served.content == stored["Body"].read()
        s3.delete_object(Bucket=bucket, Key=key)
        assert (await client.get(url)).status_code == 404
    finally:
        server.stop()
