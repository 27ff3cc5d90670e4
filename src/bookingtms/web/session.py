"""Sessions for pages: the API's own token pair kept in HttpOnly cookies, and CSRF protection.

A signed-in browser holds the access token (`btms_access`, sent to every page path) and the refresh
token (`btms_refresh`, sent only to /auth/): the same tokens, the same checks (http/principal.py:
signature, expiry, token version, logout, role as it is now) and the same permission strings as
the API. An expired access token is renewed from the refresh token on the next page request (rotation
and reuse detection as in the API). Cookies are HttpOnly, SameSite=Lax, and Secure when the
request came over https.

CSRF: every browser gets a random `btms_csrf` cookie; each form carries HMAC(secret, cookie) as
`csrf_token` (or the header `X-CSRF-Token` for fetch calls). Every unsafe request to a page path
must carry the token matching its cookie, and an `Origin` header, when sent, must be ours. The
login form is protected the same way (no login CSRF)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, Request
from starlette.responses import Response

from bookingtms.auth.tokens import ACCESS_COOKIE
from bookingtms.config import get_settings
from bookingtms.errors import AppError, Forbidden, Unauthorized
from bookingtms.http import request_context
from bookingtms.http.principal import Principal, _from_jwt, ensure_permission, ensure_platform

REFRESH_COOKIE = "btms_refresh"
CSRF_COOKIE = "btms_csrf"
CSRF_FIELD = "csrf_token"
FLASH_COOKIE = "btms_flash"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(AppError):
    """A page needs a signed-in user: answered with a redirect to the sign-in page (see web.errors)."""
    status = 401
    code = "login_required"

    def __init__(self, next_url: str = "/admin", step: str | None = None):
        super().__init__("Please sign in.")
        self.next_url = next_url
        self.step = step  # password_change | mfa_enrollment: the page that finishes it


def cookies_secure(request: Request) -> bool:
    return request_context.cookies_secure(request.url.scheme)


def _our_origins(request: Request) -> set[str]:
    configured = urlsplit(get_settings().base_url)
    return {str(request.base_url).rstrip("/"), f"{configured.scheme}://{configured.netloc}"}


# ----------------------------------------------------------------------------------------------
# CSRF
# ----------------------------------------------------------------------------------------------
def _csrf_secret() -> bytes:
    return hashlib.sha256(b"csrf:" + get_settings().resolved_secret_key().encode()).digest()


def _csrf_cookie_value(request: Request) -> str:
    """The browser's CSRF cookie, or a new one (set on the response by PageCookiesMiddleware)."""
    value = getattr(request.state, "csrf_cookie", None) or request.cookies.get(CSRF_COOKIE)
    if not value or len(value) > 128:
        value = secrets.token_urlsafe(24)
        request.state.new_csrf_cookie = value
    request.state.csrf_cookie = value
    return value


def csrf_token(request: Request) -> str:
    return hmac.new(_csrf_secret(), _csrf_cookie_value(request).encode(), hashlib.sha256).hexdigest()


async def csrf_protect(request: Request) -> None:
    """Router dependency for every page router: unsafe methods need the form's (or header's) token."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.rstrip("/") not in _our_origins(request):
        raise Forbidden("This form was sent from another site.", code="csrf_failed")
    cookie = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get(CSRF_FIELD)
    expected = hmac.new(_csrf_secret(), (cookie or "").encode(), hashlib.sha256).hexdigest()
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise Forbidden("The form expired or was not sent from this site; reload the page and try again.",
                        code="csrf_failed")


class PageCookiesMiddleware:
    """Sets the cookies a request decided on while it was handled (a new CSRF cookie, tokens renewed
    from the refresh cookie, a flash message read), whatever response the route returned. Pure ASGI:
    request.state lives in scope["state"]."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_cookies(message) -> None:
            if message["type"] == "http.response.start":
                cookies = _decided_cookies(scope)
                if cookies:
                    message["headers"] = list(message.get("headers", [])) + cookies
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def _decided_cookies(scope) -> list[tuple[bytes, bytes]]:
    state = scope.get("state") or {}
    if not any(state.get(k) for k in ("new_csrf_cookie", "renewed_pair", "flash_taken")):
        return []
    secure = request_context.cookies_secure(scope.get("scheme"))
    jar = Response()
    if state.get("new_csrf_cookie"):
        jar.set_cookie(CSRF_COOKIE, state["new_csrf_cookie"], httponly=True, samesite="lax", secure=secure, path="/")
    if state.get("flash_taken") and not state.get("flash_set"):
        jar.delete_cookie(FLASH_COOKIE, path="/")
    if state.get("renewed_pair"):
        _set_pair(jar, state["renewed_pair"], secure)
    return [(k, v) for k, v in jar.raw_headers if k == b"set-cookie"]


def set_flash(request: Request, response: Response, message: str) -> None:
    """A one-time message for the next page (a cookie: only this site can set it, so no link can fake one)."""
    request.state.flash_set = True
    response.set_cookie(FLASH_COOKIE, quote(message[:300]), max_age=60, httponly=True, samesite="lax",
                        secure=cookies_secure(request), path="/")


def take_flash(request: Request) -> str | None:
    value = request.cookies.get(FLASH_COOKIE)
    if value:
        request.state.flash_taken = True
    return unquote(value) if value else None


# ----------------------------------------------------------------------------------------------
# The signed-in user
# ----------------------------------------------------------------------------------------------
def set_session(request: Request, response: Response, pair: dict) -> None:
    _set_pair(response, pair, cookies_secure(request))


def _set_pair(response: Response, pair: dict, secure: bool) -> None:
    response.set_cookie(ACCESS_COOKIE, pair["access_token"], max_age=pair.get("expires_in", 3600) + 7 * 24 * 3600,
                        httponly=True, samesite="lax", secure=secure, path="/")
    response.set_cookie(REFRESH_COOKIE, pair["refresh_token"], max_age=7 * 24 * 3600, httponly=True,
                        samesite="lax", secure=secure, path="/")


def clear_session(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/")


RENEWAL_SECONDS = 30  # how long a renewal is handed to concurrent requests holding the same old cookie


async def _renewed(request: Request) -> Principal | None:
    """A new pair from the refresh cookie (any request: a form sent after an idle hour has passed
    the CSRF check and is the same user). Requests that arrive together with the same old cookie
    (two tabs, live streams reconnecting) share one rotation instead of tripping reuse detection,
    which would end the whole sign-in."""
    from bookingtms.auth import service
    from bookingtms.auth.tokens import hash_opaque

    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        return None
    # Shared only within one browser (its CSRF cookie): the old refresh token alone, presented
    # elsewhere, still meets reuse detection.
    browser = request.cookies.get(CSRF_COOKIE)
    key = f"bookingtms:page-renewal:{hash_opaque(token)}:{hash_opaque(browser)}" if browser else None
    try:
        pair = await (_shared_rotation(key, lambda: service.refresh(token)) if key else service.refresh(token))
    except AppError:
        return None
    if pair is None:
        return None
    request.state.renewed_pair = pair
    request.state.access_token = pair["access_token"]
    try:
        return await _from_jwt(pair["access_token"])
    except Unauthorized:
        return None


async def _shared_rotation(key: str, rotate):
    """`rotate()` once per old cookie: the first request rotates and leaves the new pair for
    RENEWAL_SECONDS; one arriving meanwhile waits for it (up to ~3 s). Without Redis: rotate."""
    import asyncio

    import orjson

    from bookingtms import cache

    try:
        redis = cache.get_redis()
        for _ in range(30):
            cached = await redis.get(key)
            if cached:
                return orjson.loads(cached)
            if await redis.set(key + ":lock", "1", nx=True, ex=10):
                break
            await asyncio.sleep(0.1)
        else:
            return None
    except Exception:  # noqa: BLE001 - Redis away: rotate without sharing
        return await rotate()
    pair = await rotate()
    try:
        await redis.set(key, orjson.dumps(pair), ex=RENEWAL_SECONDS)
    except Exception:  # noqa: BLE001
        pass
    return pair


async def signed_in(request: Request) -> Principal | None:
    """The page's user, or None. Cached on the request."""
    if hasattr(request.state, "page_principal"):
        return request.state.page_principal
    principal = None
    token = request.cookies.get(ACCESS_COOKIE)
    if token:
        try:
            principal = await _from_jwt(token)
            request.state.access_token = token
        except Unauthorized:
            principal = None
    if principal is None:
        principal = await _renewed(request)
    if principal is not None:
        request_context.set_actor(str(principal.user_id), "platform" if principal.is_platform else "user",
                                  principal.email)
    request.state.page_principal = principal
    return principal


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def any_user(request: Request) -> Principal:
    """A signed-in user, restricted tokens included (for the pages that finish those steps)."""
    principal = await signed_in(request)
    if principal is None:
        raise LoginRequired(_here(request))
    return principal


async def page_user(request: Request, principal: Principal = Depends(any_user)) -> Principal:
    """A signed-in user whose token is not limited to a pending step (else: the page that finishes it)."""
    if principal.restrict:
        raise LoginRequired(_here(request), step=principal.restrict)
    return principal


def require_page(permission: str):
    """The page counterpart of http.principal.require: a member of an organization holding `permission`."""

    async def check(principal: Principal = Depends(page_user)) -> Principal:
        return ensure_permission(principal, permission, "The staff dashboard is for members of an organization; "
                                                        "the platform team uses /platform.")

    return check


def require_platform_page(permission: str):
    """The page counterpart of http.principal.require_platform."""

    async def check(principal: Principal = Depends(page_user)) -> Principal:
        return ensure_platform(principal, permission)

    return check


def login_url(next_url: str) -> str:
    return f"/auth/login?next={quote(next_url, safe='/')}"
