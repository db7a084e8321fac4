"""Settings, read once from `LABHOOKS_*` environment variables and passed down explicitly."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from labhooks.domain.network import IPNetwork, parse_networks
from labhooks.domain.retry import parse_schedule


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABHOOKS_", extra="ignore")

    database_url: str = Field(
        "sqlite:///labhooks.db",
        description="sqlite:///path/to/file.db (the default, in the working folder) "
        "or postgresql://user@host/db",
    )
    secret_key: str | None = Field(
        None,
        description="Encrypts header values and signing secrets at rest. Unset: a key is "
        "generated once and kept in secret_key_file.",
    )
    secret_key_file: Path = Path("labhooks.secret")
    allowed_networks: str = Field(
        "", description="Comma-separated CIDRs that deliveries may reach besides public addresses"
    )
    deliver_to_public: bool = Field(
        True, description="Off: deliveries reach only LABHOOKS_ALLOWED_NETWORKS, no public address"
    )
    secure_cookies: bool = Field(
        False, description="Mark the web session cookie Secure: set it when serving over HTTPS"
    )
    retry_schedule: str = Field(
        "0,5,300,1800,7200,18000,36000,36000",
        description="Comma-separated seconds to wait before each attempt (the first normally 0)",
    )
    delivery_timeout: float = Field(15.0, gt=0, description="Seconds a target has to answer")
    auto_disable_after_days: float = Field(
        5.0, gt=0, description="Deactivate a subscription after this long with only failures"
    )
    worker_concurrency: int = Field(512, ge=1, description="Requests in flight per worker")
    worker_batch_size: int = Field(256, ge=1, description="Deliveries claimed per query")
    lease_seconds: float | None = Field(
        None,
        gt=0,
        description="Seconds a claim lasts (default: twice the timeout + 30)",
    )
    poll_interval: float = Field(
        1.0, gt=0, description="Seconds an idle worker waits before looking for due deliveries"
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, gt=0, description="Largest request body the API accepts (bytes)"
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses of reverse proxies whose X-Forwarded-For names "
        "the client (e.g. 127.0.0.1 for one on this machine); empty: none",
    )
    max_waiting_publishers: int = Field(
        200, ge=1, description="Requests waiting for answers (?wait=) at once, per process"
    )
    login_failures_per_account: int = Field(
        5, ge=1, description="Failed logins per account in 15 minutes before it waits"
    )
    login_failures_per_address: int = Field(
        30, ge=1, description="Failed logins per client address in 15 minutes before it waits"
    )
    password_time_cost: int = Field(
        2, ge=1, description="argon2id passes over memory per password hash (OWASP: 2)"
    )
    password_parallelism: int = Field(1, ge=1, description="argon2id lanes (OWASP: 1)")
    password_memory_kib: int = Field(
        19456, ge=8, description="argon2id memory per password hash, in KiB (OWASP: 19 MiB)"
    )
    # observability (issue 12): docs/observability.md
    metrics_token: str | None = Field(
        None, description="Set: GET /metrics answers only 'Authorization: Bearer <this>'"
    )
    worker_heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between a worker's heartbeats (labhooks status)"
    )
    # retention (issue 12): docs/operations.md
    retention_days: int = Field(
        90,
        ge=0,
        description="Events are purged with their deliveries and attempts (failed ones too) "
        "this many days after they were published, never while a delivery is pending; "
        "0 keeps everything",
    )
    retention_batch_size: int = Field(
        200, ge=1, description="Events purged per transaction, with their deliveries and attempts"
    )
    retention_interval: float = Field(
        600.0, gt=0, description="Seconds between a worker's purges of what has expired"
    )
    retention_pause: float = Field(
        0.2,  # bench/retention.py: 0.05 purged twice as fast and cost delivery a 2 s p99
        ge=0,
        description="Seconds a purge rests between batches, leaving the database to delivery",
    )

    @field_validator("retry_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("password_memory_kib")
    @classmethod
    def _argon2_memory_covers_its_lanes(cls, value: int, info: ValidationInfo) -> int:
        lanes = info.data.get("password_parallelism", 1)
        if value < 8 * lanes:
            raise ValueError(f"must be at least 8 KiB per lane ({8 * lanes} for {lanes} lanes)")
        return value

    @property
    def schedule(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.allowed_networks)

    @property
    def lease(self) -> float:
        return self.lease_seconds or self.delivery_timeout * 2 + 30

    def resolved_secret_key(self) -> str:
        """The configured key, else the one kept in secret_key_file (made on first use)."""
        if self.secret_key:
            return self.secret_key
        path = self.secret_key_file
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(32)
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key
