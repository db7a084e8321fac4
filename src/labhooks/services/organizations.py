from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import Conflict, NotFound
from labhooks.domain.people import Actor
from labhooks.services import audit
from labhooks.services.inputs import Input, Name
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.storage import queue
from labhooks.storage.models import Organization


class OrganizationCreate(Input):
    name: Name
    webhooks_enabled: bool = False


class OrganizationUpdate(Input):
    name: Name | None = None
    webhooks_enabled: bool | None = None


async def list_organizations(
    db: AsyncSession, actor: Actor, page: PageRequest
) -> Page[Organization]:
    actor.require_server_admin()
    return await fetch_page(db, select(Organization), Organization.id, page)


async def load_organization(db: AsyncSession, organization_id: str) -> Organization:
    organization = await db.get(Organization, organization_id)
    if organization is None:
        raise NotFound("Organisation")
    return organization


async def get_organization(db: AsyncSession, actor: Actor, organization_id: str) -> Organization:
    """Server administrators see every organisation; its own people see their own."""
    if not actor.is_server_admin and actor.organization_id != organization_id:
        raise NotFound("Organisation")
    return await load_organization(db, organization_id)


async def _ensure_name_free(db: AsyncSession, name: str) -> None:
    if await db.scalar(select(Organization.id).where(Organization.name == name)):
        raise Conflict(f"An organisation named {name!r} exists already", field="name")


async def create_organization(
    db: AsyncSession, actor: Actor, data: OrganizationCreate
) -> Organization:
    actor.require_server_admin()
    name = data.name.strip()
    await _ensure_name_free(db, name)
    organization = Organization(name=name, webhooks_enabled=data.webhooks_enabled)
    db.add(organization)
    await db.flush()  # its id, for the audit entry
    # the server's own entry (no organisation): it outlives the organisation it names
    await audit.record(
        db,
        actor,
        "organization.created",
        "organization",
        organization.id,
        f"Created the organisation {name}",
        {"name": [None, name], "webhooks_enabled": [None, data.webhooks_enabled]},
    )
    await db.commit()
    return organization


async def update_organization(
    db: AsyncSession, actor: Actor, organization_id: str, data: OrganizationUpdate
) -> Organization:
    actor.require_server_admin()
    organization = await load_organization(db, organization_id)
    before = {"name": organization.name, "webhooks_enabled": organization.webhooks_enabled}
    if data.name is not None and data.name.strip() != organization.name:
        await _ensure_name_free(db, data.name.strip())
        organization.name = data.name.strip()
    if data.webhooks_enabled is not None:
        organization.webhooks_enabled = data.webhooks_enabled
        if data.webhooks_enabled:
            await queue.wake(db)  # held deliveries go out now
    after = {"name": organization.name, "webhooks_enabled": organization.webhooks_enabled}
    if changes := audit.diff(before, after):
        await audit.record(
            db,
            actor,
            "organization.updated",
            "organization",
            organization.id,
            _organization_summary(organization.name, changes),
            changes,
            organization_id=organization.id,
        )
    await db.commit()
    return organization


def _organization_summary(name: str, changes: dict[str, list[object]]) -> str:
    parts = []
    if "name" in changes:
        parts.append(f"renamed {changes['name'][0]} to {name}")
    if "webhooks_enabled" in changes:
        state = "on" if changes["webhooks_enabled"][1] else "off"
        parts.append(f"switched webhooks {state} for {name}")
    words = "; ".join(parts)
    return words[:1].upper() + words[1:]
