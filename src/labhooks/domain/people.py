"""Who is asking: the caller of any API route, web page or CLI command, and what its role allows."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from labhooks.domain.errors import PermissionDenied


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class TokenScope(enum.StrEnum):
    FULL = "full"  # acts as its user
    PUBLISH = "publish"  # a device gateway's token: may only publish events


@dataclass(frozen=True)
class Actor:
    user_id: str
    organization_id: str | None  # None for a server administrator
    role: Role | None
    is_server_admin: bool
    scope: TokenScope = TokenScope.FULL
    token_id: str | None = None  # the API token it came with (None: a web session, the CLI)
    device_id: str | None = None  # a gateway token held to one device publishes only its events

    @property
    def is_org_admin(self) -> bool:
        return self.organization_id is not None and self.role is Role.ADMIN

    def require_server_admin(self) -> None:
        if not self.is_server_admin:
            raise PermissionDenied("Only a server administrator may do this.")

    def require_organization(self) -> str:
        if self.organization_id is None:
            raise PermissionDenied(
                "Server administrators manage organisations, not their content; "
                "use an account of the organisation."
            )
        return self.organization_id

    def require_org_admin(self) -> str:
        organization_id = self.require_organization()
        if self.role is not Role.ADMIN:
            raise PermissionDenied("Only an organisation administrator may do this.")
        return organization_id
