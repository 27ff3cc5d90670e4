"""Driving the pages as a browser would, without one: cookies, the CSRF token from the forms, 303s."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_from(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


class PageClient:
    """An httpx client with its own cookie jar (one browser), against the app in-process or a live server."""

    def __init__(self, app=None, base_url: str = "http://testserver"):
        transport = httpx.ASGITransport(app=app) if app is not None else None
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url, follow_redirects=False, timeout=30)
        self._csrf: str | None = None

    async def __aenter__(self) -> "PageClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()

    async def get(self, url: str, **kw) -> httpx.Response:
        return await self.http.get(url, **kw)

    async def csrf(self) -> str:
        """This browser's CSRF token (the same on every page while its cookie lives)."""
        if self._csrf is None:
            self._csrf = csrf_from((await self.http.get("/auth/login")).text)
        return self._csrf

    async def post(self, url: str, data: dict | None = None, files: dict | None = None, **kw) -> httpx.Response:
        form = {"csrf_token": await self.csrf(), **(data or {})}
        return await self.http.post(url, data=form, files=files, **kw)

    async def sign_in(self, email: str, password: str) -> httpx.Response:
        response = await self.post("/auth/login", {"email": email, "password": password})
        assert response.status_code == 303, response.text
        return response
