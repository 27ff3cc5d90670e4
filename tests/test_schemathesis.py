"""A fuzz run of the app's own OpenAPI document with schemathesis against a real running server
(`bookingtms serve` in its own process, rate limits off so the fuzzer is not throttled).

Every operation in the document is fuzzed (none is left out: those needing state get the
organization's real ids in the path), with a bounded number of examples each:
  1. as an organization owner (super-admin): schema-valid data with random ids, schema-valid data
     with the organization's real ids in the path (so handlers get past "not found"), and
     schema-violating (negative) data;
  2. unauthenticated, the widget's public endpoints, with a real venue's embed key;
  3. numbers JSON allows but 64 bits do not (2**70, nested 10**30) in every free-form object field
     of every request body, on real objects, then every readable operation read back -- the fuzzer
     finds these only now and then, so they are tried on purpose.
Each answer is checked: no 5xx (`not_a_server_error`); the documented response schema and media
type hold where the document declares one for that status (`response_schema_conformance`,
`content_type_conformance`; undocumented statuses such as 401/403/404 are not themselves failures,
since FastAPI documents only 2xx and 422); and every 4xx is `application/problem+json`.

Failures are collected per operation, kind and status instead of stopping at the first one (no
shrinking: each is reported with the first input that showed it, as a curl command), so one run
lists everything. Knobs: BOOKINGTMS_FUZZ_EXAMPLES (examples per operation, default 15),
BOOKINGTMS_FUZZ_SEED (other inputs than the default derandomized run), BOOKINGTMS_FUZZ_ONLY (a regex
on "METHOD /path" to dig into some operations)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from bookingtms.auth.permissions import PERMISSION_MATRIX
from tests.factories import (
    PASSWORD,
    add_staff,
    book,
    future_session,
    hold,
    make_activity,
    make_tenant,
    unique,
)

EXAMPLES = int(os.environ.get("BOOKINGTMS_FUZZ_EXAMPLES", "15"))  # per operation (all generation modes)
SEED = os.environ.get("BOOKINGTMS_FUZZ_SEED")
ONLY = re.compile(os.environ.get("BOOKINGTMS_FUZZ_ONLY", ""))  # e.g. "PATCH /v1/activities" to dig into one
REQUEST_TIMEOUT = 15  # seconds per request (an event stream is read for at most this long)
OPERATION_BUDGET = 20  # seconds of requests per operation and run; keeps the file bounded on 2 cores
# Not part of the API the document describes.
SKIP_PATHS = {"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect",
              # A stream stays open by design (every valid case would wait out the timeout);
              # tests/realtime covers its errors, limits and isolation.
              "/v1/public/venues/{embed_key}/events"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


# ------------------------------------------------------------------------------------------------
# An organization to fuzz inside
# ------------------------------------------------------------------------------------------------
@dataclass
class FuzzOrg:
    email: str
    token: str
    ids: dict[str, str]  # path parameter kind -> a real object of this organization
    embed_key: str


async def _fuzz_org(client, platform_admin) -> FuzzOrg:
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=200)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=1, email=f"{unique('fuzz')}@example.com")
    held = await hold(client, tenant, session["id"], spots=1, email=f"{unique('fuzz')}@example.com")
    assert held.status_code == 201, held.text
    customers = await client.get("/v1/customers", headers=tenant.headers)
    key = await client.post("/v1/api-keys", headers=tenant.headers,
                            json={"name": unique("fuzz"), "permissions": sorted(PERMISSION_MATRIX)})
    assert key.status_code == 201, key.text
    await add_staff(client, tenant, "manager")
    users = await client.get("/v1/users", headers=tenant.headers)
    staff = [u["id"] for u in users.json().get("items", []) if u.get("role") == "manager"] \
        if users.status_code == 200 else []
    ids = {"organization": tenant.organization_id, "venue": tenant.venue_id, "activity": activity["id"],
           "session": session["id"], "booking": booking["id"], "reference": booking["reference"],
           "reservation": held.json()["reservation_id"], "customer": customers.json()["items"][0]["id"],
           "api_key": key.json()["id"], "embed_key": tenant.embed_key}
    if staff:  # never the owner: a fuzzed PATCH/DELETE may well succeed on the object it names
        ids["user"] = staff[0]
    return FuzzOrg(email=tenant.owner_email, token=tenant.token, ids=ids, embed_key=tenant.embed_key)


def _singular(word: str) -> str:
    word = word.replace("-", "_")
    return word[:-3] + "y" if word.endswith("ies") else word.removesuffix("s")


def real_path_parameters(path: str, ids: dict[str, str]) -> dict[str, str] | None:
    """The organization's own objects for an operation's path parameters (None if any is unknown)."""
    segments = path.strip("/").split("/")
    values = {}
    for index, segment in enumerate(segments):
        match = re.fullmatch(r"\{([^}]+)\}", segment)
        if not match:
            continue
        name = match.group(1)
        before = _singular(segments[index - 1]) if index else ""
        stem = name[:-3] if name.endswith("_id") else ("" if name == "id" else name)
        kind = before if before and (stem == "" or before.endswith(stem)) else stem
        if kind not in ids:
            return None
        values[name] = ids[kind]
    return values


# ------------------------------------------------------------------------------------------------
# The fuzz loop
# ------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    operation: str
    kind: str
    status: int | None
    example: str
    response: str
    count: int = 1


@dataclass
class Report:
    findings: dict[tuple[str, str, int | None], Finding] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, operation: str, kind: str, status: int | None, example: str, response: str) -> None:
        key = (operation, kind, status)
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(operation, kind, status, example, response)

    def render(self) -> str:
        """One entry per kind of failure and status, listing the operations that show it, with the
        first input (as curl) and answer for up to three of them."""
        groups: dict[tuple[str, int | None], list[Finding]] = {}
        for f in self.findings.values():
            groups.setdefault((f.kind, f.status), []).append(f)
        lines = []
        for (kind, status), found in sorted(groups.items(), key=lambda g: (-(g[0][1] or 0) // 100, g[0][0])):
            found.sort(key=lambda f: f.operation)
            lines.append(f"- {kind} (status {status}) on {len(found)} operation(s), "
                         f"{sum(f.count for f in found)} case(s): {', '.join(f.operation for f in found)}")
            for f in found[:3]:
                lines.append(f"    e.g. {f.example[:700]}\n      -> {f.response[:500]}")
        return "\n".join(lines + self.errors)


def _content_type(response) -> str:
    values = response.headers.get("content-type") or [""]
    return values[0].split(";")[0].strip().lower()


def _excerpt(response) -> str:
    body = (response.content or b"")[:400].decode("utf-8", "replace").replace("\n", " ")
    return f"{response.status_code} {_content_type(response)} {body}"


def fuzz_operation(operation, base_url: str, headers: dict[str, str], report: Report,
                   fixed: dict[str, str] | None, real: dict[str, str] | None, *,
                   mutate: Callable[[Any], None] | None = None, examples: int = EXAMPLES) -> None:
    """Positive cases (random and, when known, the organization's real ids in the path) and negative
    cases for one operation; every answer checked, every distinct failure recorded. With `mutate`,
    only positive cases on the real objects, each changed by `mutate` before it is sent."""
    label = operation.label
    strategies = []
    plan = ((GenerationMode.POSITIVE, fixed), (GenerationMode.POSITIVE, real), (GenerationMode.NEGATIVE, fixed))
    if mutate is not None:
        plan = ((GenerationMode.POSITIVE, real or fixed),)
    for mode, params in plan:
        if params is None and mode == GenerationMode.POSITIVE and strategies:
            continue
        try:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=params or None))
        except Exception as exc:  # noqa: BLE001 - a schema the fuzzer cannot use is itself a finding
            report.add(label, f"cannot generate {mode.value} data: {type(exc).__name__}: {exc}", None, "", "")
    if not strategies:
        return
    began = time.monotonic()
    deadline = began + OPERATION_BUDGET
    report.requests.setdefault(label, 0)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=SEED is None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(case=st.one_of(strategies))
    def run(case):
        if time.monotonic() > deadline:
            return
        report.requests[label] += 1
        if mutate is not None:
            mutate(case)
        example = case.as_curl_command(headers={k: "…" for k in headers}, base_url=base_url)
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - no answer (timeout, connection dropped) is a finding
            report.add(label, f"no answer: {type(exc).__name__}", None, example, str(exc)[:300])
            return
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                report.add(label, f"{failure.title}", response.status_code, example, _excerpt(response))
        except Failure as failure:
            report.add(label, f"{failure.title}", response.status_code, example, _excerpt(response))
        if 400 <= response.status_code < 500 and _content_type(response) != "application/problem+json":
            report.add(label, "4xx is not application/problem+json", response.status_code, example,
                       _excerpt(response))

    if SEED is not None:
        run = seed(int(SEED))(run)
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - e.g. Unsatisfiable: the generator could not build cases
        report.errors.append(f"- {label}: the fuzzer itself failed: {type(exc).__name__}: {str(exc)[:300]}")
    report.seconds[label] = report.seconds.get(label, 0.0) + time.monotonic() - began


def free_form_fields(doc: dict[str, Any], path: str, method: str) -> list[str]:
    """Top-level request body properties that take any JSON object (settings, metadata, ...)."""
    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = doc
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        for key in ("anyOf", "oneOf"):
            if key in schema:
                schema = next((resolve(s) for s in schema[key] if resolve(s).get("type") != "null"), schema)
        return schema

    spec = doc["paths"].get(path, {}).get(method.lower(), {})
    body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if not body:
        return []
    return [name for name, sub in resolve(body).get("properties", {}).items()
            if resolve(sub).get("type") == "object" and not resolve(sub).get("properties")]


EXTREME = {"big": 2**70, "small": -(2**70), "nested": [{"deep": 10**30}]}


async def owner_still_works(http: httpx.AsyncClient, token: str) -> bool:
    response = await http.get("/v1/venues", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200


async def login(http: httpx.AsyncClient, email: str) -> str | None:
    response = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    return response.json().get("access_token") if response.status_code == 200 else None


async def test_fuzz_the_openapi_document_against_a_running_server(client, platform_admin, live_server_factory):
    started = time.monotonic()
    server = live_server_factory({"BOOKINGTMS_RATE_LIMITS": "0"})
    # No keep-alive: a pooled connection left idle during a long fuzz round may be closed under us.
    http = httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT,
                             limits=httpx.Limits(max_keepalive_connections=0))
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()  # raises for an operation whose schema cannot be used
        if operation.path not in SKIP_PATHS and ONLY.search(operation.label):
            operations.append(operation)
    assert len(operations) >= (30 if not ONLY.pattern else 1), f"suspiciously few operations: {len(operations)}"

    # Operations that end the caller's session run last.
    operations.sort(key=lambda op: (op.path.rstrip("/").endswith("/logout"), op.path.startswith("/v1/auth/")))
    owner_report, public_report = Report(), Report()

    # 1. As an organization owner. A fuzzed request may legitimately log the owner out, change their
    #    password, require MFA or delete what the real ids name: between operations, if the owner can
    #    no longer list venues, sign in again or start over with a fresh organization.
    org = await _fuzz_org(client, platform_admin)
    for operation in operations:
        if not await owner_still_works(http, org.token):
            token = await login(http, org.email)
            if token and await owner_still_works(http, token):
                org.token = token
            else:
                org = await _fuzz_org(client, platform_admin)
        fuzz_operation(operation, server.url, {"Authorization": f"Bearer {org.token}"}, owner_report,
                       fixed=None, real=real_path_parameters(operation.path, org.ids) or None)

    # 2. Unauthenticated, the widget's endpoints, with a real embed key (and real ids where known).
    public_org = await _fuzz_org(client, platform_admin)
    public_ops = [op for op in operations if op.path.startswith("/v1/public/") or "{embed_key}" in op.path]
    assert public_ops or ONLY.pattern, "no public operations in the document"
    for operation in public_ops:
        fixed = {"embed_key": public_org.embed_key} if "{embed_key}" in operation.path else None
        real = real_path_parameters(operation.path, public_org.ids) or None
        fuzz_operation(operation, server.url, {}, public_report, fixed=fixed, real=real)

    # 3. Numbers JSON allows but 64 bits do not, in every free-form object field a body has (the
    #    fuzzer finds these only now and then): the write, and every read of what it wrote afterwards,
    #    must not be a 5xx. Each operation is sent a few positive cases on a fresh organization's real
    #    objects, with those fields replaced.
    extreme_report = Report()
    doc = (await http.get("/openapi.json")).json()
    probe_org = await _fuzz_org(client, platform_admin)
    probe_headers = {"Authorization": f"Bearer {probe_org.token}"}
    probed = []
    for operation in operations:
        fields = free_form_fields(doc, operation.path, operation.method)
        if not fields or operation.path.startswith("/v1/auth/"):
            continue
        real = real_path_parameters(operation.path, probe_org.ids) or None
        if "{" in operation.path and real is None:
            continue

        def extreme(case, fields=fields):
            if isinstance(case.body, dict):
                case.body.update({name: dict(EXTREME) for name in fields})

        is_public = operation.path.startswith("/v1/public/")
        fuzz_operation(operation, server.url, {} if is_public else probe_headers, extreme_report,
                       fixed=None, real=real, mutate=extreme, examples=5)
        probed.append(operation.label)
    for operation in operations:
        if operation.method.upper() != "GET" or operation.path.startswith("/v1/auth/"):
            continue
        real = real_path_parameters(operation.path, probe_org.ids)
        if real is None:
            continue
        url = re.sub(r"\{([^}]+)\}", lambda m, real=real: real[m.group(1)], operation.path)
        try:
            response = await http.get(url, headers=probe_headers)
        except httpx.HTTPError as exc:
            extreme_report.add(operation.label, f"no answer reading back: {type(exc).__name__}", None,
                               f"curl {url}", str(exc)[:300])
            continue
        if response.status_code >= 500:
            extreme_report.add(operation.label, "server error reading back what the probes above stored",
                               response.status_code, f"curl {url}", f"{response.status_code} {response.text[:300]}")

    await http.aclose()
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {len(operations)} operations as owner ({sum(owner_report.requests.values())} requests), "
          f"{len(public_ops)} public ({sum(public_report.requests.values())} requests), "
          f"max {EXAMPLES} examples per operation, {elapsed:.0f}s")
    slowest = sorted(owner_report.seconds.items(), key=lambda kv: -kv[1])[:5]
    print("  slowest operations (owner run): " + ", ".join(f"{label} {secs:.1f}s" for label, secs in slowest))
    problems = []
    if owner_report.findings or owner_report.errors:
        problems.append("As an organization owner:\n" + owner_report.render())
    if public_report.findings or public_report.errors:
        problems.append("Unauthenticated, public endpoints with a real embed key:\n" + public_report.render())
    print(f"  extreme numbers in free-form fields of: {probed}")
    if extreme_report.findings or extreme_report.errors:
        problems.append("Extreme numbers in free-form JSON fields, then reading back:\n" + extreme_report.render())
    found = sum(len(r.findings) for r in (owner_report, public_report, extreme_report))
    assert not problems, f"schemathesis found {found} distinct failures:\n\n" + "\n\n".join(problems)
    thin = [label for label, n in owner_report.requests.items() if n == 0]
    assert not thin, f"operations never exercised: {thin}"
