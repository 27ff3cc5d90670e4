"""Application errors. Each one becomes an RFC 9457 problem+json response with a stable `code`."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body = {
            "type": f"https://bookingtms.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        # A field-level refusal names its field both ways, whichever raised it: `field` (the first)
        # and `errors` (each), so a client can rely on either.
        if body.get("field") and "errors" not in body:
            body["errors"] = [{"field": body["field"], "message": self.detail}]
        elif body.get("errors") and "field" not in body:
            body["field"] = body["errors"][0]["field"]
        return body


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "Invalid request"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class SoldOut(Conflict):
    code, title = "sold_out", "Not enough capacity left"


class Gone(AppError):
    status, code, title = 410, "gone", "Gone"


class ReservationExpired(Gone):
    code, title = "reservation_expired", "The reservation has expired"


class PreconditionFailed(AppError):
    status, code, title = 412, "version_conflict", "The resource was changed by someone else"


class PreconditionRequired(AppError):
    status, code, title = 428, "precondition_required", "An If-Match header is required"


class ServiceUnavailable(AppError):
    status, code, title = 503, "unavailable", "Temporarily unavailable"


# ---------------------------------------------------------------------------------------------
# The one problem+json handler: every error leaves the app through here.
# ---------------------------------------------------------------------------------------------
_page_error = None  # set by install_error_handlers: renders errors on HTML pages (web/errors.py)


def error_response(error: AppError, request):
    from bookingtms.http.responses import ProblemResponse

    if _page_error is not None:
        page = _page_error(request, error)
        if page is not None:
            return page
    return ProblemResponse(error.to_problem(str(request.url.path)), status_code=error.status, headers=error.headers)


def _from_validation(exc) -> AppError:
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        if err.get("type") == "json_invalid":
            return AppError("The request body is not valid JSON.", code="malformed_json", status=400)
        errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    fields = ", ".join(e["field"] for e in errors)
    return ValidationFailed(f"Invalid value for: {fields}.", errors=errors)


def _from_database(exc) -> AppError:
    """Constraint and data errors that slipped past validation are still the caller's 4xx."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if state in ("40001", "40P01"):
        return ServiceUnavailable("A concurrent change got in the way; please retry.", code="retry",
                                  headers={"Retry-After": "1"})
    if state == "23505":
        return Conflict("That would duplicate an existing record.", code="duplicate")
    if state == "23503":
        return Conflict("That refers to a record that does not exist or is still in use.", code="reference_conflict")
    if state.startswith("23"):
        return ValidationFailed("A value breaks a rule of this record.", code="constraint_violation")
    if state.startswith("22"):
        return ValidationFailed("A value is out of range or malformed.", code="invalid_value")
    if state == "42501":
        return NotFound("Not found.")
    # no answer / connection lost / too many connections or out of resources (53) / shutdown
    if not state or state.startswith("08") or state.startswith("53") or state.startswith("57P"):
        return ServiceUnavailable("The database is unavailable; please retry shortly.", code="unavailable",
                                  headers={"Retry-After": "2"})
    raise exc


def install_error_handlers(app, page_error=None) -> None:
    """`page_error(request, error)` answers errors on page paths as HTML (None: problem+json)."""
    global _page_error
    import structlog
    from fastapi.exceptions import RequestValidationError
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout
    from starlette.exceptions import HTTPException

    log = structlog.get_logger("bookingtms.errors")
    _page_error = page_error

    async def app_error(request, exc: AppError):
        return error_response(exc, request)

    async def validation_error(request, exc: RequestValidationError):
        return error_response(_from_validation(exc), request)

    async def http_error(request, exc: HTTPException):
        codes = {400: ("malformed_json", "Bad request"),  # Starlette's only 400: a body it cannot parse
                 404: ("not_found", "Not found"), 405: ("method_not_allowed", "Method not allowed")}
        code, title = codes.get(exc.status_code, ("http_error", "HTTP error"))
        err = AppError(str(exc.detail) if exc.detail else title, code=code, status=exc.status_code,
                       headers=dict(exc.headers or {}))
        err.title = title
        return error_response(err, request)

    async def database_error(request, exc: DBAPIError):
        try:
            return error_response(_from_database(exc), request)
        except DBAPIError:
            return await unexpected(request, exc)

    async def overloaded(request, exc):
        log.warning("database_unavailable", error=type(exc).__name__)
        return error_response(ServiceUnavailable("The service is busy; please retry shortly.", code="unavailable",
                                                    headers={"Retry-After": "2"}), request)

    async def unexpected(request, exc: Exception):
        log.exception("unhandled_error", path=request.url.path)
        err = AppError("Something went wrong on our side; it has been logged.", code="internal_error", status=500)
        err.title = "Internal error"
        return error_response(err, request)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, overloaded)  # every pooled connection busy for pool_timeout
    app.add_exception_handler(ConnectionError, overloaded)
    app.add_exception_handler(Exception, unexpected)
