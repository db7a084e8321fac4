from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from labhooks.api.deps import CurrentActor, PageOut, Paging
from labhooks.dependencies import DbSession, State
from labhooks.domain.headers import MASKED_VALUE
from labhooks.services.subscriptions import SubscriptionCreate, SubscriptionUpdate
from labhooks.storage.models import WebhookSubscription

router = APIRouter(prefix="/webhook-subscriptions", tags=["webhook subscriptions"])


class HeaderPublic(BaseModel):
    key: str
    masked_value: str = MASKED_VALUE


class ChannelSelectionPublic(BaseModel):
    channel_id: str
    channel_key: str
    channel_name: str
    device_id: str
    device_name: str
    events: list[str]


class SubscriptionPublic(BaseModel):
    id: str
    organization_id: str
    owner_id: str | None
    target_url: str
    description: str | None
    headers: list[HeaderPublic]
    channels: list[ChannelSelectionPublic]
    active: bool
    disabled_reason: str | None
    ordered: bool
    rate_limit_per_s: float | None
    retry_schedule: list[float] | None
    created_at: datetime
    updated_at: datetime


class SecretPublic(BaseModel):
    key: str


def public(subscription: WebhookSubscription) -> SubscriptionPublic:
    grouped: dict[str, ChannelSelectionPublic] = {}
    for selection in subscription.selections:
        channel = selection.channel
        entry = grouped.setdefault(
            channel.id,
            ChannelSelectionPublic(
                channel_id=channel.id,
                channel_key=channel.key,
                channel_name=channel.name,
                device_id=channel.device.id,
                device_name=channel.device.name,
                events=[],
            ),
        )
        entry.events.append(selection.event_type)
    return SubscriptionPublic(
        id=subscription.id,
        organization_id=subscription.organization_id,
        owner_id=subscription.owner_id,
        target_url=subscription.target_url,
        description=subscription.description,
        headers=[HeaderPublic(key=h.name) for h in subscription.headers],
        channels=list(grouped.values()),
        active=subscription.active,
        disabled_reason=subscription.disabled_reason,
        ordered=subscription.ordered,
        rate_limit_per_s=subscription.rate_limit_per_s,
        retry_schedule=subscription.retry_schedule,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


@router.get("", response_model=PageOut[SubscriptionPublic])
async def list_subscriptions(
    state: State, db: DbSession, actor: CurrentActor, paging: Paging
) -> object:
    """Members see their own subscriptions; organisation administrators see all of theirs."""
    page = await state.subscriptions.list_for(db, actor, paging)
    return {"items": [public(s) for s in page.items], "next_cursor": page.next_cursor}


@router.post("", status_code=201, response_model=SubscriptionPublic)
async def create_subscription(
    state: State, db: DbSession, actor: CurrentActor, body: SubscriptionCreate
) -> object:
    return public(await state.subscriptions.create(db, actor, body))


@router.get("/{subscription_id}", response_model=SubscriptionPublic)
async def get_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    return public(await state.subscriptions.get(db, actor, subscription_id))


@router.put("/{subscription_id}", response_model=SubscriptionPublic)
async def replace_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str, body: SubscriptionCreate
) -> object:
    """Replaces every field. A header given without `value` keeps its stored value."""
    return public(await state.subscriptions.replace(db, actor, subscription_id, body))


@router.patch("/{subscription_id}", response_model=SubscriptionPublic)
async def update_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str, body: SubscriptionUpdate
) -> object:
    """Changes only the fields given. A header given without `value` keeps its stored value."""
    return public(await state.subscriptions.update(db, actor, subscription_id, body))


@router.delete("/{subscription_id}", status_code=204)
async def delete_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> Response:
    await state.subscriptions.delete(db, actor, subscription_id)
    return Response(status_code=204)


@router.post("/{subscription_id}/activate", response_model=SubscriptionPublic)
async def activate_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    return public(await state.subscriptions.set_active(db, actor, subscription_id, True))


@router.post("/{subscription_id}/deactivate", response_model=SubscriptionPublic)
async def deactivate_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    return public(await state.subscriptions.set_active(db, actor, subscription_id, False))


@router.get("/{subscription_id}/secret", response_model=SecretPublic)
async def get_secret(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    """The signing secret (`whsec_…`) receivers use to verify deliveries."""
    return SecretPublic(key=await state.subscriptions.reveal_secret(db, actor, subscription_id))


@router.post("/{subscription_id}/rotate-secret", response_model=SecretPublic)
async def rotate_secret(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    """A new secret; deliveries carry signatures of both secrets for the next 24 hours."""
    return SecretPublic(key=await state.subscriptions.rotate_secret(db, actor, subscription_id))
