"""Provable tenant isolation: walk EVERY operation of the app's OpenAPI document with organization
A's credentials (a staff member of each role, and an API key holding every organization permission)
against organization B's ids and collections, then check B's stored data is unchanged.

Nothing here names an endpoint. Operations come from `app.openapi()`; path parameters are filled by
name (`venue_id`, `key_id`, `reference`, ...; a bare `{id}` by the path segment before it) with B's
objects; request bodies are built from the requestBody schema (required fields, plausible values,
every `..._id` field -- even optional -- set to B's object); B's data of new kinds is created by
every POST that answers 201 (or found in the table named after the kind). A path parameter this
file cannot map fails the test, saying which mapping to add, so no new endpoint slips by unwalked.

Rules, for every answer:
  * never a 5xx;
  * naming one of B's objects in the path: 404 (or 403 `permission_denied` for a role/credential
    that lacks the permission, or a platform-only endpoint);
  * a collection (no path ids): 200 with none of B's data, also when filtered by B's ids (then
    empty), or 403 `permission_denied`; a write into A's own collection that refers to B's objects:
    refused with 404 / `*_not_found`; one that does not: anything but 5xx (A may create its own);
  * B's ids, booking references, customer and staff emails, embed keys, key prefixes, generated
    names and slug appear in no response body, except what that same request sent (a 404 names its
    path) and, in an audit log, values A itself sent earlier (A's own attempts). Collections are
    first walked before A has sent anything of B's, so there nothing at all is exempt.
The whole walk runs twice, the second time with `X-Organization-Id: <B>` on every request, which
must change no answer. The widget's endpoints (`/v1/public/*`, keyed by embed key) are walked with
A's embed key against B's ids. Bearer-less auth endpoints (login, refresh, password reset, MFA
verify, OIDC redirects) are left out; sign-out runs last."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bookingtms.auth.permissions import ORG_ROLES, PERMISSION_MATRIX
from tests.factories import (
    api_routes,
    Tenant,
    add_staff,
    bearer,
    book,
    future_session,
    hold,
    make_activity,
    make_tenant,
    today,
    unique,
)

# Operations that are not the tenant's data at all.
EXCLUDED_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
REQUEST_TIMEOUT = 30  # seconds; an answer that never ends (a stream) is a finding, not a hang
# 403 codes that mean "your role / kind of credential may not do this" rather than anything about B.
PERMISSION_CODES = {"permission_denied"}


# ------------------------------------------------------------------------------------------------
# Route introspection (who takes a bearer) and OpenAPI helpers
# ------------------------------------------------------------------------------------------------


def _dependency_names(dependant) -> set[str]:
    names: set[str] = set()
    for dep in dependant.dependencies:
        call = dep.call
        names.add(f"{getattr(call, '__module__', '')}.{getattr(call, '__qualname__', '')}")
        names |= _dependency_names(dep)
    return names


def route_dependencies(app) -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) -> qualified names of every dependency in the route's tree."""
    return {(method, route.path_format): _dependency_names(route.dependant)
            for route in api_routes(app.routes) for method in route.methods}


def takes_bearer(deps: set[str] | None) -> bool:
    return deps is None or "bookingtms.http.principal.authenticate" in deps


def permission_guarded(deps: set[str] | None) -> bool:
    return bool(deps) and any(".require.<locals>" in d or ".require_platform.<locals>" in d for d in deps)


def singular(word: str) -> str:
    word = word.replace("-", "_")
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def plural(kind: str) -> list[str]:
    out = [kind + "s", kind + "es", kind]
    if kind.endswith("y"):
        out.insert(0, kind[:-1] + "ies")
    return out


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def is_event_stream(self) -> bool:
        return "text/event-stream" in self.spec.get("responses", {}).get("200", {}).get("content", {})

    def params(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p.get("in") == where]

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{([^}]+)\}", self.path)

    @property
    def is_public(self) -> bool:
        return self.path.startswith("/v1/public/") or "{embed_key}" in self.path

    @property
    def is_collection(self) -> bool:
        return not self.path_params

    @property
    def ends_session(self) -> bool:
        return self.path.rstrip("/").endswith("/logout")


# ------------------------------------------------------------------------------------------------
# The two organizations
# ------------------------------------------------------------------------------------------------
@dataclass
class World:
    a: Tenant
    b: Tenant
    a_customer_email: str
    ids: dict[str, str]  # kind -> one of B's ids (venue, activity, session, booking, customer, ...)
    values: dict[str, str]  # non-id path values of B: reference
    etags: dict[str, str]  # path template -> B's current ETag there (for If-Match)
    secrets: set[str] = field(default_factory=set)  # everything of B's that must never reach A
    tables: list[str] = field(default_factory=list)  # tenant tables (with organization_id)


def tenant_tables(owner) -> list[str]:
    with owner.connect() as conn:
        return sorted(conn.execute(text(
            "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
            "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.table_schema = 'public' AND c.column_name = 'organization_id' AND t.table_type = 'BASE TABLE'"
        )).scalars())


def fingerprint(owner, tables: list[str], org_id: str) -> dict[str, tuple]:
    """Row count and checksum of the organization's rows in every tenant table, as the owner sees them."""
    with owner.connect() as conn:
        return {t: tuple(conn.execute(text(
            f'SELECT count(*), md5(string_agg(x::text, \'|\' ORDER BY x::text)) FROM "{t}" x '
            "WHERE organization_id = :o"), {"o": org_id}).one()) for t in tables}


def columns_of(owner, table: str) -> set[str]:
    with owner.connect() as conn:
        return set(conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = :t"),
            {"t": table}).scalars())


IDENTIFYING_COLUMN = re.compile(r"^(id|email|.*_email|reference|.*_reference|embed_key|prefix)$")
UNIQUE_NAME = re.compile(r"-[0-9a-f]{10}")  # names made by tests.factories.unique(): B's alone


def b_secrets(owner, tables: list[str], b: Tenant) -> set[str]:
    """Every id of every row B owns, and every identifying value in them (booking references,
    customer and staff emails, embed keys, API key prefixes), the uniquely generated names of its
    venues and activities, and its slug."""
    found = {b.organization_id}
    with owner.connect() as conn:
        for table in tables:
            cols = sorted(c for c in columns_of(owner, table) if IDENTIFYING_COLUMN.match(c) or c == "name")
            for col in cols:
                values = {str(v) for v in conn.execute(text(
                    f'SELECT "{col}"::text FROM "{table}" WHERE organization_id = :o AND "{col}" IS NOT NULL'),
                    {"o": b.organization_id}).scalars()}
                found |= values if col != "name" else {v for v in values if UNIQUE_NAME.search(v)}
        found.add(conn.execute(text("SELECT slug FROM organizations WHERE id = :o"),
                               {"o": b.organization_id}).scalar_one())
    return {s for s in found if s and len(s) >= 6}


# ------------------------------------------------------------------------------------------------
# Plausible values and bodies from schemas
# ------------------------------------------------------------------------------------------------
STRING_BY_NAME = {
    "password": "Walker-Pa55word-Long!", "current_password": "Walker-Pa55word-Long!",
    "new_password": "Walker-Pa55word-Long2!", "timezone": "America/New_York", "currency": "USD",
    "phone": "+15555550100", "otp": "123456", "code": "123456", "reason": "isolation walk",
    "role": "staff", "url": "https://example.com/walk", "redirect_uri": "https://example.com/walk",
    "refund": "none", "first_name": "Walker", "last_name": "Walk", "full_name": "Walker Walk", "name": "Walker",
    "plan": "free",
}
INT_BY_NAME = {"capacity": 4, "capacity_total": 4, "guest_count": 1, "spots": 1, "duration_minutes": 60,
               "price_amount": 1000, "min_players": 1, "max_players": 4, "rollout_percent": 0}
PATTERN_CANDIDATES = ["10:00", "USD", "mon", "ABCDE-FGHJK", "walker", "walker-1", "2026-01-01", "+15555550100",
                      "A1", "a"]


class Walker:
    def __init__(self, doc: dict[str, Any], world: World, public: bool = False):
        self.doc = doc
        self.world = world
        self.public = public
        self.unmapped: set[str] = set()

    # -- references --------------------------------------------------------------------------
    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 20:
            node: Any = self.doc
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for sub in schema["allOf"]:
                sub = self.resolve(sub)
                merged.setdefault("properties", {}).update(sub.get("properties", {}))
                merged.setdefault("required", []).extend(sub.get("required", []))
                merged.update({k: v for k, v in sub.items() if k not in ("properties", "required")})
            schema = {**merged, **{k: v for k, v in schema.items() if k != "allOf"}}
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.resolve(s) for s in schema[key]]
                chosen = next((s for s in options if s.get("type") != "null"), options[0])
                schema = {**chosen, **{k: v for k, v in schema.items() if k != key}}
        return schema

    def kind_for(self, name: str, path: str | None = None) -> str | None:
        """The kind of object a parameter or field names: `venue_id` -> venue; `{id}` and `{key_id}`
        after `/api-keys/` -> api_key (the path segment before the parameter wins when it ends with
        the parameter's own stem)."""
        stem = name[:-3] if name.endswith("_id") else (None if name != "id" else "")
        if stem is None:
            return None
        if path:
            segments = path.strip("/").split("/")
            index = segments.index("{" + name + "}") if "{" + name + "}" in segments else -1
            before = singular(segments[index - 1]) if index > 0 and not segments[index - 1].startswith("{") else None
            if before and (stem == "" or before.endswith(stem) or before == stem):
                return before
        return stem or None

    def b_id(self, kind: str | None) -> str | None:
        return self.world.ids.get(kind) if kind else None

    def path_value(self, op: Op, name: str) -> str | None:
        """B's value for a path parameter, or None (the test then fails: add a mapping here)."""
        if name == "embed_key":
            return self.world.a.embed_key  # A's widget, asked about B's things
        if name in self.world.values:
            return self.world.values[name]
        return self.b_id(self.kind_for(name, op.path))

    # -- values ------------------------------------------------------------------------------
    def string(self, name: str, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if "enum" in schema:
            return STRING_BY_NAME[name] if STRING_BY_NAME.get(name) in schema["enum"] else schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        if fmt == "uuid" or name.endswith("_id"):
            return self.b_id(self.kind_for(name)) or str(uuid.uuid4())
        if fmt == "email" or name == "email" or name.endswith("_email"):
            return f"{unique('walker')}@example.com"
        if fmt == "date" or name in ("from", "to", "date") or name.endswith("_date"):
            return (today() + timedelta(days=5)).isoformat()
        if fmt == "date-time" or name.endswith("_at"):
            return (datetime.now(UTC) + timedelta(days=5)).isoformat()
        if fmt == "time":
            return "10:00:00"
        if fmt in ("uri", "url"):
            return "https://example.com/walk"
        if name == "reference":
            return self.world.values["reference"]
        if name == "slug":
            value = unique("walker")
        elif name in STRING_BY_NAME:
            value = STRING_BY_NAME[name]
        else:
            value = unique("walker")  # unique: names and keys of things the walk creates never collide
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            value = next((c for c in [value, *PATTERN_CANDIDATES] if re.search(pattern, c)), value)
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if len(value) < low:
            value = value + "x" * (low - len(value))
        if high is not None:
            value = value[:high]
        return value

    def number(self, name: str, schema: dict[str, Any]) -> int | float:
        value = INT_BY_NAME.get(name, 1)
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        if isinstance(low, (int, float)):
            value = max(value, low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if isinstance(high, (int, float)):
            value = min(value, high)
        return value

    def value(self, name: str, schema: dict[str, Any], depth: int = 0) -> Any:
        schema = self.resolve(schema)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind is None and "properties" in schema:
            kind = "object"
        if "enum" in schema and kind in (None, "string"):
            return self.string(name, schema)
        if kind == "string" or (kind is None and ("format" in schema or "pattern" in schema)):
            return self.string(name, schema)
        if kind in ("integer", "number"):
            return self.number(name, schema)
        if kind == "boolean":
            return False
        if kind == "array":
            if name == "permissions":
                return ["bookings.view"]
            items = schema.get("items", {})
            return [self.value(singular(name), items, depth + 1) for _ in range(max(schema.get("minItems", 0), 0))]
        if kind == "object" or depth == 0:
            return self.body(schema, depth)
        return "walker"

    def body(self, schema: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        """Required fields with plausible values; any field naming an object (`..._id`) is filled with
        B's id even when optional, so that every cross-tenant reference a body can carry is tried."""
        schema = self.resolve(schema)
        out: dict[str, Any] = {}
        required = set(schema.get("required", []))
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name in required or (name.endswith("_id") and self.b_id(self.kind_for(name))):
                out[name] = self.value(name, sub, depth + 1)
        if not out and properties and depth == 0:
            # Nothing required (a PATCH): one plausible change, so the request is not refused as empty
            # before the object it names is looked up.
            name, sub = next(iter(properties.items()))
            out[name] = self.value(name, sub, depth + 1)
        return out

    def request_body(self, op: Op) -> Any:
        content = op.spec.get("requestBody", {}).get("content", {})
        for media, entry in content.items():
            if "json" in media:
                return self.value("body", entry.get("schema", {}))
        return None


# ------------------------------------------------------------------------------------------------
# Setting up A and B (through the API, as a business would)
# ------------------------------------------------------------------------------------------------
async def _org_data(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    activity = await make_activity(client, tenant, capacity=50)
    session = await future_session(client, tenant, activity)
    email = f"{unique('guest')}@example.com"
    booking = await book(client, tenant, session["id"], spots=2, email=email)
    held = await hold(client, tenant, session["id"], spots=1, email=email)  # a live hold, never checked out
    assert held.status_code == 201, held.text
    found = await client.get("/v1/customers", headers=tenant.headers, params={"q": email})
    assert found.status_code == 200, found.text
    [customer] = found.json()["items"]
    key = await client.post("/v1/api-keys", headers=tenant.headers,
                            json={"name": unique("walk-key"), "permissions": sorted(PERMISSION_MATRIX)})
    assert key.status_code == 201, key.text
    return {"activity": activity["id"], "session": session["id"], "booking": booking["id"],
            "reference": booking["reference"], "reservation": held.json()["reservation_id"],
            "customer": customer["id"], "customer_email": email, "api_key": key.json()["id"],
            "api_key_secret": key.json()["secret"]}


def _one_id(body: Any) -> str | None:
    if isinstance(body, dict):
        if isinstance(body.get("id"), str):
            return body["id"]
        for value in body.values():
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                return value["id"]
    return None


async def _seed_other_kinds(client, doc, world: World, platform_admin, b_owner_headers) -> None:
    """One object of every kind B can create that the fixed setup above did not make: every POST
    that answers 201 with all its path parameters mappable, as B's owner (platform ones as the
    platform admin). Kinds added by new endpoints get data in B this way without editing this file."""
    walker = Walker(doc, world)
    for path, item in doc["paths"].items():
        spec = item.get("post")
        if not spec or "201" not in spec.get("responses", {}):
            continue
        op = Op("POST", path, spec)
        if op.is_public or path.startswith("/v1/auth/") or path in EXCLUDED_PATHS:
            continue
        segments = [s for s in path.strip("/").split("/") if not s.startswith("{")]
        kind = singular(segments[-1]) if segments else None
        if not kind or kind in world.ids or kind in ("organization",):
            continue
        values = {name: walker.path_value(op, name) for name in op.path_params}
        if any(v is None for v in values.values()):
            continue
        url = re.sub(r"\{([^}]+)\}", lambda m, values=values: values[m.group(1)], path)
        headers = platform_admin.headers if path.startswith("/v1/platform/") else b_owner_headers
        response = await client.post(url, headers=headers, json=walker.request_body(op))
        if response.status_code == 201 and (found := _one_id(response.json())):
            world.ids[kind] = found


def _fallback_ids_from_db(owner, doc, world: World) -> None:
    """For kinds still unmapped, one of B's rows in the matching table (or any row of a platform
    table without organization_id, e.g. plans)."""
    walker = Walker(doc, world)
    kinds = {walker.kind_for(name, path) for path in doc["paths"] for name in re.findall(r"\{([^}]+)\}", path)}
    with owner.connect() as conn:
        existing = set(conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).scalars())
        for kind in sorted(k for k in kinds if k and k not in world.ids):
            table = next((t for t in plural(kind) if t in existing), None)
            if table is None or "id" not in columns_of(owner, table):
                continue
            where = "WHERE organization_id = :o" if "organization_id" in columns_of(owner, table) else ""
            found = conn.execute(text(f'SELECT id::text FROM "{table}" {where} ORDER BY 1 LIMIT 1'),
                                 {"o": world.b.organization_id}).scalar()
            if found:
                world.ids[kind] = found


@pytest.fixture(scope="module")
async def world(client, app, platform_admin, owner_engine) -> World:
    a = await make_tenant(client, platform_admin)
    b = await make_tenant(client, platform_admin)
    a_data = await _org_data(client, a)
    b_data = await _org_data(client, b)
    for role in ORG_ROLES:  # B's staff (their emails must never reach A)
        await add_staff(client, b, role)
    # B's staff write something (a staff booking by the manager): audit rows, another customer.
    manager = await add_staff(client, b, "manager")
    walk_in = await client.post("/v1/bookings", headers=bearer(manager), json={
        "session_id": b_data["session"], "guest_count": 1,
        "customer": {"email": f"{unique('walkin')}@example.com", "first_name": "Walk", "last_name": "In"}})
    assert walk_in.status_code == 201, walk_in.text
    with owner_engine.connect() as conn:
        b_user = conn.execute(text("SELECT id::text FROM users WHERE organization_id = :o AND role = 'manager' "
                                   "ORDER BY created_at LIMIT 1"), {"o": b.organization_id}).scalar_one()
    ids = {"organization": b.organization_id, "venue": b.venue_id, "activity": b_data["activity"],
           "session": b_data["session"], "booking": b_data["booking"], "customer": b_data["customer"],
           "reservation": b_data["reservation"], "api_key": b_data["api_key"], "user": b_user,
           "staff": b_user, "member": b_user}
    a.extra.update(a_data)
    world = World(a=a, b=b, a_customer_email=a_data["customer_email"], ids=ids,
                  values={"reference": b_data["reference"]}, etags={})
    doc = app.openapi()
    # Kinds with no fixed setup: an existing row if there is one (plans), else create one.
    _fallback_ids_from_db(owner_engine, doc, world)
    await _seed_other_kinds(client, doc, world, platform_admin, b.headers)
    _fallback_ids_from_db(owner_engine, doc, world)
    # B's current ETags where an operation wants If-Match, so a missing tenant check cannot hide
    # behind a 412.
    walker = Walker(doc, world)
    for path, item in doc["paths"].items():
        wants = any(p.get("in") == "header" and p["name"].lower() == "if-match"
                    for spec in item.values() if isinstance(spec, dict) for p in spec.get("parameters", []))
        if wants and "get" in item:
            op = Op("GET", path, item["get"])
            values = {name: walker.path_value(op, name) for name in op.path_params}
            if all(values.values()):
                url = re.sub(r"\{([^}]+)\}", lambda m, values=values: values[m.group(1)], path)
                got = await client.get(url, headers=b.headers)
                if got.status_code == 200 and got.headers.get("etag"):
                    world.etags[path] = got.headers["etag"]
    world.tables = tenant_tables(owner_engine)
    world.secrets = b_secrets(owner_engine, world.tables, b)
    return world


# ------------------------------------------------------------------------------------------------
# The walk
# ------------------------------------------------------------------------------------------------
@dataclass
class Credential:
    name: str
    headers: dict[str, str]
    kind: str  # user | api_key | none


@dataclass
class Result:
    credential: str
    op: str
    variant: str
    status: int


class Walk:
    def __init__(self, client: httpx.AsyncClient, doc: dict[str, Any], deps, world: World):
        self.client = client
        self.doc = doc
        self.deps = deps
        self.world = world
        self.walker = Walker(doc, world)
        self.failures: list[str] = []
        self.known_to_a: set[str] = set()  # B's values A has itself sent (kept in A's audit log)
        self.coverage: Counter = Counter()
        self.results: list[Result] = []

    def operations(self) -> list[Op]:
        ops = [Op(method.upper(), path, spec) for path, item in self.doc["paths"].items()
               for method, spec in item.items() if method in HTTP_METHODS and path not in EXCLUDED_PATHS]
        # Operations that end the caller's session go last.
        return sorted(ops, key=lambda op: (op.ends_session, op.path.startswith("/v1/auth/"), op.path, op.method))

    def excluded(self, op: Op) -> bool:
        """Auth endpoints that take no bearer (login, refresh, password reset, OIDC redirects), and
        event streams, which never end (tests/realtime shows a stream hears only its own venue)."""
        return op.is_event_stream or (op.path.startswith("/v1/auth/")
                                      and not takes_bearer(self.deps.get((op.method, op.path))))

    # -- building a request ------------------------------------------------------------------
    def build(self, op: Op, filtered: bool) -> tuple[str, dict[str, Any], dict[str, str], Any, bool] | None:
        """(url, query, headers, body, uses_b) or None when a path parameter cannot be mapped."""
        values: dict[str, str] = {}
        for name in op.path_params:
            value = self.walker.path_value(op, name)
            if value is None:
                self.walker.unmapped.add(f"{op.label}: path parameter '{name}'")
                return None
            values[name] = value
        url = re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], op.path)
        query: dict[str, Any] = {}
        for param in op.params("query"):
            name, schema = param["name"], self.walker.resolve(param.get("schema", {}))
            if name == "email" and op.is_public:
                query[name] = self.world.a_customer_email  # the reference/email pair is the customer's key
            elif filtered and name.endswith("_id") and self.walker.b_id(self.walker.kind_for(name)):
                query[name] = self.walker.b_id(self.walker.kind_for(name))
            elif filtered and name in ("q", "search", "email"):
                query[name] = self.world.values["reference"] if name != "email" else next(
                    s for s in self.world.secrets if "@" in s)
            elif name == "limit":
                query[name] = min(200, schema.get("maximum", 200))
            elif param.get("required"):
                query[name] = self.walker.value(name, schema)
        headers: dict[str, str] = {}
        for param in op.params("header"):
            lname = param["name"].lower()
            if lname == "if-match":
                headers[param["name"]] = self.world.etags.get(op.path, '"1"')
            elif lname == "idempotency-key":
                headers[param["name"]] = str(uuid.uuid4())
            elif param.get("required"):
                headers[param["name"]] = str(self.walker.value(param["name"], param.get("schema", {})))
        body = self.walker.request_body(op) if op.method != "GET" else None
        sent = json.dumps([url, query, body], default=str).lower()
        uses_b = any(s.lower() in sent for s in self.world.secrets | set(self.world.values.values()))
        return url, query, headers, body, uses_b

    async def send(self, method: str, url: str, **kwargs) -> httpx.Response | None:
        try:
            return await asyncio.wait_for(self.client.request(method, url, **kwargs), REQUEST_TIMEOUT)
        except TimeoutError:
            return None

    # -- judging an answer -------------------------------------------------------------------
    def leaks(self, op: Op, response: httpx.Response, sent: str) -> list[str]:
        """B's values in the answer, other than those this very request sent (a 404 names the path it
        was asked for) and, in an audit log, those A sent earlier (A's own attempts, faithfully kept)."""
        body = response.text.lower()
        known = self.known_to_a if "audit" in op.path else set()
        return sorted(s for s in self.world.secrets
                      if s.lower() in body and s.lower() not in sent and s.lower() not in known)

    def judge(self, cred: Credential, op: Op, variant: str, response: httpx.Response, uses_b: bool,
              filtered: bool) -> str | None:
        status = response.status_code
        deps = self.deps.get((op.method, op.path))
        try:
            payload = response.json()
        except ValueError:
            payload = None
        code = payload.get("code") if isinstance(payload, dict) else None
        if status >= 500:
            return f"server error {status}"
        addresses_b = bool(op.path_params) and any(
            self.walker.path_value(op, n) not in (None, self.world.a.embed_key) for n in op.path_params)
        if status == 403 and code in PERMISSION_CODES:
            return None
        if status == 403 and (addresses_b or uses_b):
            return f"403 with code {code!r}: a refusal must be 404 (another organization's object) or " \
                   f"permission_denied (role/credential)"
        if status == 401:
            # An API key may be refused where only a signed-in person may act (no permission check),
            # and an endpoint keyed by something other than the bearer (a feed token) may refuse.
            if (cred.kind == "api_key" and not permission_guarded(deps)) or not takes_bearer(deps):
                return None
            return "401: the credential stopped working (or the endpoint refuses a valid bearer)"
        if addresses_b:
            # Addressed one of B's objects: only "not found" (or a permission refusal, above).
            if status == 404 or (status == 422 and str(code).endswith("not_found")):
                return None
            return f"{status} when addressing B's object (expected 404)"
        if uses_b:
            # A collection asked about (or a write referring to) B's objects.
            if status in (404, 410) or (status in (409, 422) and str(code).endswith("not_found")):
                return None
            if 200 <= status < 300 and op.method == "GET":
                items = payload.get("items") if isinstance(payload, dict) else None
                if items is not None and items != [] and filtered:
                    return f"200 with {len(items)} items when filtered by B's ids"
                if op.is_public and isinstance(payload, dict) and payload.get("sessions"):
                    return "public listing returned sessions when filtered by B's ids"
                return None
            if 200 <= status < 300:
                return f"{status}: a write that refers to B's objects was accepted"
            if status == 422:
                return "422: refused as malformed before B's objects were looked up; make the walker " \
                       "build a valid request for this operation (Walker.value / Walk.build)"
            return None if 400 <= status < 500 else f"unexpected {status}"
        # A's own collection or a write into it: anything but 5xx (B's data is checked for leaks
        # and, after the walk, for changes).
        return None

    async def call(self, cred: Credential, op: Op, extra_headers: dict[str, str], variant: str,
                   filtered: bool = False) -> None:
        built = self.build(op, filtered)
        if built is None:
            return
        url, query, headers, body, uses_b = built
        kwargs: dict[str, Any] = {"params": query, "headers": {**cred.headers, **extra_headers, **headers}}
        if body is not None:
            kwargs["json"] = body
        response = await self.send(op.method, url, **kwargs)
        label = f"[{cred.name}{'' if not extra_headers else ' +X-Organization-Id'}] {op.method} {url}" + (
            f" ?{query}" if query else "") + (f" body={json.dumps(body, default=str)}" if body is not None else "")
        self.coverage[(cred.name, variant)] += 1
        if response is None:
            self.failures.append(f"{label}: no complete answer within {REQUEST_TIMEOUT}s")
            return
        sent = json.dumps([url, query, body], default=str).lower()
        problem = self.judge(cred, op, variant, response, uses_b, filtered)
        if problem:
            self.failures.append(f"{label}: {problem}: {response.status_code} {response.text[:300]}")
        leaked = self.leaks(op, response, sent)
        if leaked:
            self.failures.append(f"{label}: B's data in the response ({', '.join(leaked)}): "
                                 f"{response.status_code} {response.text[:300]}")
        self.known_to_a |= {s.lower() for s in self.world.secrets | set(self.world.values.values())
                            if s.lower() in sent}
        self.results.append(Result(cred.name, op.label + (" (filtered)" if filtered else ""), variant,
                                   response.status_code))


async def _credentials(client, world: World) -> list[Credential]:
    creds = [Credential(role, bearer(await add_staff(client, world.a, role)), "user") for role in ORG_ROLES]
    key = await client.post("/v1/api-keys", headers=world.a.headers,
                            json={"name": unique("walker"), "permissions": sorted(PERMISSION_MATRIX)})
    assert key.status_code == 201, key.text
    creds.append(Credential("api-key", bearer(key.json()["secret"]), "api_key"))
    return creds


async def test_organization_a_cannot_reach_organization_b_through_any_operation(client, app, world, owner_engine):
    doc = app.openapi()
    walk = Walk(client, doc, route_dependencies(app), world)
    ops = walk.operations()
    tenant_ops = [op for op in ops if not op.is_public and not walk.excluded(op)]
    public_ops = [op for op in ops if op.is_public and not walk.excluded(op)]
    before = fingerprint(owner_engine, world.tables, world.b.organization_id)

    variants = {"plain": {}, "x-org": {"X-Organization-Id": world.b.organization_id}}
    creds_by_variant = {name: await _credentials(client, world) for name in variants}

    # 1. Before A has sent anything of B's: A's collections, as every credential, show nothing of B.
    for variant, extra in variants.items():
        for cred in creds_by_variant[variant]:
            for op in tenant_ops:
                if op.method == "GET" and op.is_collection:
                    await walk.call(cred, op, extra, variant)
    # 2. Every operation, B's ids in every path parameter (and collections filtered by B's ids).
    for variant, extra in variants.items():
        for cred in creds_by_variant[variant]:
            for op in tenant_ops:
                if op.method == "GET" and op.is_collection:
                    await walk.call(cred, op, extra, variant, filtered=True)
                else:
                    await walk.call(cred, op, extra, variant)
    # 3. The widget's endpoints: A's embed key, B's ids.
    anonymous = Credential("public (A's embed key)", {}, "none")
    for variant, extra in variants.items():
        for op in public_ops:
            await walk.call(anonymous, op, extra, variant, filtered=op.is_collection)

    after = fingerprint(owner_engine, world.tables, world.b.organization_id)
    changed = {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}

    # Coverage: every walkable operation, by every credential, in both variants.
    walkable = [op for op in ops if not walk.excluded(op)]
    summary = defaultdict(dict)
    for (cred, variant), count in sorted(walk.coverage.items()):
        summary[cred][variant] = count
    print("\nisolation walk coverage (requests per credential and variant):")
    for cred, per in summary.items():
        print(f"  {cred:<24} {per}")
    print(f"  operations in the document: {len(ops)}, walked: {len(tenant_ops)} tenant + {len(public_ops)} public; "
          f"excluded (bearer-less auth): {sorted(op.label for op in ops if walk.excluded(op))}")

    print(f"  B's objects addressed by kind: {sorted(world.ids)}; B values watched for: {len(world.secrets)}")
    answers: dict[str, Counter] = defaultdict(Counter)
    for r in walk.results:
        answers[r.op][r.status] += 1
    for op_label, statuses in sorted(answers.items()):
        print(f"  {op_label:<72} " + " ".join(f"{s}x{n}" for s, n in sorted(statuses.items())))

    # The X-Organization-Id header changes nothing for an organization's credentials.
    by_key: dict[tuple[str, str, str], int] = {(r.variant, r.credential, r.op): r.status for r in walk.results}
    header_changes = sorted(
        f"[{cred}] {op}: {status} without the header, {by_key[('x-org', cred, op)]} with it"
        for (variant, cred, op), status in by_key.items()
        if variant == "plain" and ("x-org", cred, op) in by_key and by_key[("x-org", cred, op)] != status
        and not op.startswith("POST") and "/v1/auth/" not in op)

    problems = []
    if walk.walker.unmapped:
        problems.append("Path parameters this walk cannot fill with one of B's objects -- add a mapping in "
                        "tests/tenancy/test_isolation_walk.py (World.ids in the `world` fixture, or "
                        "Walker.kind_for/path_value) so these operations are walked:\n  "
                        + "\n  ".join(sorted(walk.walker.unmapped)))
    if walk.failures:
        problems.append(f"{len(walk.failures)} isolation failures:\n  " + "\n  ".join(walk.failures))
    if changed:
        problems.append(f"B's data changed during the walk: {changed}")
    if header_changes:
        problems.append("X-Organization-Id changed answers for organization credentials:\n  "
                        + "\n  ".join(header_changes))
    assert not problems, "\n\n".join(problems)

    v1 = [op for op in walkable if op.path.startswith("/v1/")]
    assert len(v1) >= 30, f"suspiciously few operations in the OpenAPI document: {len(v1)}"
    for variant in variants:
        for cred in creds_by_variant[variant]:
            assert walk.coverage[(cred.name, variant)] >= len(tenant_ops), (cred.name, variant, walk.coverage)
        assert walk.coverage[(anonymous.name, variant)] >= len(public_ops)
