"""Settings, read once from `LABHOOKS_*` environment variables and passed down explicitly."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    retry_schedule: str = Field(
        "0,5,300,1800,7200,18000,36000,36000",
        description="Comma-separated seconds to wait before each retry",
    )
    delivery_timeout: float = Field(15.0, gt=0, description="Seconds a target has to answer")
    max_body_bytes: int = Field(
        2 * 1024 * 1024, gt=0, description="Largest request body the API accepts (bytes)"
    )

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
