"""The organisation's allow-list of target URLs."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import Conflict, InvalidInput, NotFound
from labhooks.domain.network import AddressPolicy
from labhooks.domain.people import Actor
from labhooks.domain.targets import InvalidTargetURL, TargetURL, first_match, parse_target_url
from labhooks.services import audit
from labhooks.services.inputs import Input
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.storage.models import TargetUrl, WebhookSubscription


class TargetUrlCreate(Input):
    url: str = Field(max_length=4096)
    description: str | None = Field(None, max_length=2000)


WARNING_LOOKUP_S = 2.0  # how long registering waits for DNS to say where a host is


async def delivery_warning(url: str, policy: AddressPolicy) -> str | None:
    """Why deliveries to `url` would be refused as things stand (a private LIMS that
    LABHOOKS_ALLOWED_NETWORKS does not cover, say), in words naming the setting; None when they
    would go, or when DNS cannot tell now (each attempt's error will)."""
    target = parse_target_url(url)
    try:
        addresses = {ipaddress.ip_address(target.host)}
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(WARNING_LOOKUP_S):
                found = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            return None
        addresses = {ipaddress.ip_address(info[4][0]) for info in found}
    refusals = [policy.refusal(address) for address in addresses]
    if addresses and all(refusals):
        # The refusal names the setting; a server administrator, not the user, changes it.
        return (
            f"Deliveries to {target.host} would be refused as things stand: {refusals[0]} "
            "(a server setting)."
        )
    return None


def parse_field(raw: str, field: str) -> TargetURL:
    try:
        return parse_target_url(raw)
    except InvalidTargetURL as exc:
        raise InvalidInput.single(field, str(exc)) from None


async def registered_urls(db: AsyncSession, organization_id: str) -> list[TargetURL]:
    urls = await db.scalars(
        select(TargetUrl.url).where(TargetUrl.organization_id == organization_id)
    )
    return [parse_target_url(u) for u in urls]


async def list_target_urls(db: AsyncSession, actor: Actor, page: PageRequest) -> Page[TargetUrl]:
    organization_id = actor.require_organization()
    statement = select(TargetUrl).where(TargetUrl.organization_id == organization_id)
    return await fetch_page(db, statement, TargetUrl.id, page)


async def create_target_url(db: AsyncSession, actor: Actor, data: TargetUrlCreate) -> TargetUrl:
    organization_id = actor.require_org_admin()
    url = str(parse_field(data.url, "url"))
    exists = await db.scalar(
        select(TargetUrl.id).where(
            TargetUrl.organization_id == organization_id, TargetUrl.url == url
        )
    )
    if exists:
        raise Conflict(f"{url} is registered already", field="url")
    target = TargetUrl(organization_id=organization_id, url=url, description=data.description)
    db.add(target)
    await db.flush()  # its id, for the audit entry
    await audit.record(
        db,
        actor,
        "target_url.registered",
        "target_url",
        target.id,
        f"Registered the target URL {url}",
        audit.diff({}, {"url": url, "description": data.description}),
    )
    await db.commit()
    return target


async def delete_target_url(db: AsyncSession, actor: Actor, target_url_id: str) -> int:
    """Unregisters the URL; active subscriptions no other registered URL admits are deactivated.

    Returns how many subscriptions were deactivated.
    """
    organization_id = actor.require_org_admin()
    target = await db.get(TargetUrl, target_url_id)
    if target is None or target.organization_id != organization_id:
        raise NotFound("Target URL")
    await db.delete(target)
    await db.flush()
    remaining = await registered_urls(db, organization_id)
    subscriptions = await db.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.organization_id == organization_id,
            WebhookSubscription.active.is_(True),
            WebhookSubscription.deleted_at.is_(None),
        )
    )
    deactivated = 0
    for subscription in subscriptions:
        if first_match(remaining, parse_target_url(subscription.target_url)) is None:
            subscription.active = False
            subscription.disabled_reason = (
                f"The registered target URL {target.url} was removed by an organisation "
                "administrator."
            )
            deactivated += 1
    await audit.record(
        db,
        actor,
        "target_url.removed",
        "target_url",
        target.id,
        f"Removed the registered target URL {target.url}"
        + (f"; {deactivated} subscription(s) deactivated" if deactivated else ""),
        audit.diff({"url": target.url, "description": target.description}, {}),
    )
    await db.commit()
    return deactivated
