"""Settings from the environment (and a `.env` file). Imports no project code."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    # A streaming replica: read-only endpoints read from it; the booking flow stays on the primary.
    database_read_url: str | None = Field(default=None, alias="DATABASE_READ_URL")
    # A direct (unpooled) connection to the primary, for what a transaction-mode PgBouncer cannot
    # carry: migrations (session advisory lock) and LISTEN. Defaults to DATABASE_URL.
    database_direct_url: str | None = Field(default=None, alias="DATABASE_DIRECT_URL")
    # Off behind PgBouncer in transaction mode (asyncpg's and SQLAlchemy's statement caches).
    db_prepared_statements: bool = Field(default=True, alias="BOOKINGTMS_DB_PREPARED_STATEMENTS")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    data_dir: Path = Field(default=Path("./var"), alias="BOOKINGTMS_DATA_DIR")
    secret_key: str | None = Field(default=None, alias="BOOKINGTMS_SECRET_KEY")
    reservation_ttl_seconds: int = Field(default=300, alias="BOOKINGTMS_RESERVATION_TTL_SECONDS", gt=0)
    base_url: str = Field(default="http://127.0.0.1:8000", alias="BOOKINGTMS_BASE_URL")
    trusted_proxies: str = Field(default="", alias="BOOKINGTMS_TRUSTED_PROXIES")
    # How long `serve` keeps an idle keep-alive connection open. It must outlast the idle timeout of
    # whatever reuses connections (clients' pools, a load balancer), or the server may close one
    # just as a request goes out on it, and that request gets no answer.
    keep_alive_seconds: int = Field(default=75, alias="BOOKINGTMS_KEEP_ALIVE_SECONDS", gt=0)
    rate_limits: bool = Field(default=True, alias="BOOKINGTMS_RATE_LIMITS")
    # Overrides of the rate limit table in http/ratelimit.py (PRD 3.2.1), in `limits` notation
    # ("100/minute", "5/10 seconds"); unset keeps the table's value.
    rate_limit_public: str | None = Field(default=None, alias="BOOKINGTMS_RATE_LIMIT_PUBLIC")
    rate_limit_authenticated: str | None = Field(default=None, alias="BOOKINGTMS_RATE_LIMIT_AUTHENTICATED")
    rate_limit_admin: str | None = Field(default=None, alias="BOOKINGTMS_RATE_LIMIT_ADMIN")
    rate_limit_webhook: str | None = Field(default=None, alias="BOOKINGTMS_RATE_LIMIT_WEBHOOK")
    # How often the in-process job loop wakes; tests shorten it.
    job_interval_seconds: float = Field(default=5.0, alias="BOOKINGTMS_JOB_INTERVAL_SECONDS", gt=0)
    # How far ahead sessions are kept generated.
    session_horizon_days: int = Field(default=60, alias="BOOKINGTMS_SESSION_HORIZON_DAYS", gt=0)
    db_pool_size: int = Field(default=10, alias="BOOKINGTMS_DB_POOL_SIZE", gt=0)
    db_max_overflow: int = Field(default=10, alias="BOOKINGTMS_DB_MAX_OVERFLOW", ge=0)
    log_level: str = Field(default="INFO", alias="BOOKINGTMS_LOG_LEVEL")
    # Redis read-through caches (PRD 3.3.1); off only to measure what they save.
    cache_enabled: bool = Field(default=True, alias="BOOKINGTMS_CACHE")
    # Server-Sent Events: open streams one process serves at most, and the heartbeat interval.
    sse_max_streams: int = Field(default=1000, alias="BOOKINGTMS_SSE_MAX_STREAMS", gt=0)
    sse_heartbeat_seconds: float = Field(default=15.0, alias="BOOKINGTMS_SSE_HEARTBEAT_SECONDS", gt=0)
    # Sign in with Google (or any OpenID Connect provider) for staff; off unless a client is configured.
    oidc_issuer: str = Field(default="https://accounts.google.com", alias="OIDC_ISSUER")
    oidc_client_id: str | None = Field(default=None, alias="OIDC_CLIENT_ID")
    oidc_client_secret: str | None = Field(default=None, alias="OIDC_CLIENT_SECRET")
    oidc_redirect_uri: str | None = Field(default=None, alias="OIDC_REDIRECT_URI")

    # Payments (issue 4): Stripe Connect is used when a secret key is configured.
    stripe_secret_key: str | None = Field(default=None, alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: str | None = Field(default=None, alias="STRIPE_WEBHOOK_SECRET")
    # How long a Stripe Checkout Session (and so a pending booking's hold) lasts; Stripe's minimum is 30 min.
    stripe_checkout_minutes: int = Field(default=30, alias="BOOKINGTMS_STRIPE_CHECKOUT_MINUTES", ge=30, le=1440)

    # Notifications (issue 4): email goes to the `file` backend (one .eml per message under the data
    # dir) unless SMTP_URL or RESEND_API_KEY is set; BOOKINGTMS_EMAIL_BACKEND forces one.
    email_backend: str | None = Field(default=None, alias="BOOKINGTMS_EMAIL_BACKEND")
    email_from: str = Field(default="BookingTMS <no-reply@bookingtms.dev>", alias="BOOKINGTMS_EMAIL_FROM")
    smtp_url: str | None = Field(default=None, alias="SMTP_URL")
    resend_api_key: str | None = Field(default=None, alias="RESEND_API_KEY")
    twilio_account_sid: str | None = Field(default=None, alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: str | None = Field(default=None, alias="TWILIO_AUTH_TOKEN")
    twilio_from_number: str | None = Field(default=None, alias="TWILIO_FROM_NUMBER")
    notification_max_attempts: int = Field(default=8, alias="BOOKINGTMS_NOTIFICATION_MAX_ATTEMPTS", ge=1, le=50)
    notification_backoff_seconds: float = Field(default=30.0, alias="BOOKINGTMS_NOTIFICATION_BACKOFF_SECONDS", gt=0)

    # Pictures (issue 6): kept under <data dir>/media unless an S3-compatible bucket is named
    # (credentials the usual AWS way: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile or a role).
    s3_bucket: str | None = Field(default=None, alias="BOOKINGTMS_S3_BUCKET")
    s3_endpoint_url: str | None = Field(default=None, alias="BOOKINGTMS_S3_ENDPOINT_URL")
    s3_region: str | None = Field(default=None, alias="BOOKINGTMS_S3_REGION")

    # Name of the login role the application uses; migrations create it.
    app_db_role: str = "bookingtms_app"
    access_token_ttl_seconds: int = 3600

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    def resolved_oidc_redirect_uri(self) -> str:
        return self.oidc_redirect_uri or f"{self.base_url.rstrip('/')}/v1/auth/oidc/callback"

    def resolved_secret_key(self) -> str:
        """The signing secret: from the environment, else generated once into the data dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        self.secret_key = path.read_text().strip()
        return self.secret_key


@lru_cache
def get_settings() -> Settings:
    return Settings()
