"""Who and where a request comes from, readable by services without passing the request around
(audit rows need the request id, client address and actor)."""

from __future__ import annotations

import functools
import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass, replace

from bookingtms.config import get_settings


@dataclass(frozen=True)
class RequestInfo:
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    actor_id: str | None = None
    actor_type: str = "anonymous"  # user | api_key | platform | customer | system | anonymous
    actor_label: str | None = None  # email of a user, name of an API key


_current: ContextVar[RequestInfo] = ContextVar("request_info", default=RequestInfo(actor_type="system"))


def current() -> RequestInfo:
    return _current.get()


def begin(info: RequestInfo):
    return _current.set(info)


def end(token) -> None:
    _current.reset(token)


def set_actor(actor_id: str | None, actor_type: str, label: str | None) -> None:
    _current.set(replace(_current.get(), actor_id=actor_id, actor_type=actor_type, actor_label=label))


def _trusted() -> tuple:
    return _networks(get_settings().trusted_proxies)


@functools.lru_cache(maxsize=8)
def _networks(setting: str) -> tuple:
    nets = []
    for item in filter(None, (p.strip() for p in setting.split(","))):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue
    return tuple(nets)


def is_trusted(addr: str | None) -> bool:
    """A peer named in BOOKINGTMS_TRUSTED_PROXIES."""
    trusted = _trusted()
    if not addr or not trusted:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def scheme(peer: str | None, own: str, forwarded_proto: str | None) -> str:
    """The scheme the client used: X-Forwarded-Proto when a trusted proxy (terminating TLS) sent
    it, else the connection's own."""
    if forwarded_proto and is_trusted(peer):
        proto = forwarded_proto.split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return own


def cookies_secure(request_scheme: str | None) -> bool:
    """Whether cookies get `Secure`: https as the browser sees it, this request's scheme (see
    `scheme`) or the configured public base URL (a TLS proxy that sends no X-Forwarded-Proto)."""
    return request_scheme == "https" or get_settings().base_url.startswith("https://")


def client_ip(peer: str | None, forwarded_for: str | None) -> str | None:
    """The peer address, or, when the peer is a trusted proxy, the last untrusted address in
    X-Forwarded-For (the one the proxy saw)."""
    if not peer or not forwarded_for or not is_trusted(peer):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not is_trusted(hop):
            return hop
    return peer
