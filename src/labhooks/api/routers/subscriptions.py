from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from labhooks.api.deps import CurrentActor, PageOut, Paging
from labhooks.dependencies import AppState, DbSession, State
from labhooks.domain.headers import MASKED_VALUE
from labhooks.domain.signing import PublicKey, SignatureScheme
from labhooks.services.subscriptions import (
    SubscriptionCreate,
    SubscriptionUpdate,
    public_keys_of,
)
from labhooks.services.target_urls import delivery_warning
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


class PublicKeyPublic(BaseModel):
    key: str = Field(description="`whpk_` + base64 of the ed25519 public key")
    expires_at: datetime | None = Field(
        description="null for the current key; for the previous one, when it stops signing"
    )


class PublicKeysPublic(BaseModel):
    keys: list[PublicKeyPublic] = Field(description="Newest first")


class SubscriptionPublic(BaseModel):
    id: str
    organization_id: str
    owner_id: str | None
    target_url: str
    description: str | None
    headers: list[HeaderPublic]
    channels: list[ChannelSelectionPublic]
    organization_events: list[str] = Field(
        description="Operational events about the organisation's subscriptions it receives"
    )
    active: bool
    disabled_reason: str | None
    ordered: bool
    rate_limit_per_s: float | None
    retry_schedule: list[float] | None
    signature_scheme: SignatureScheme
    public_keys: list[PublicKeyPublic] = Field(
        description="The ed25519 keys that verify its deliveries now, as GET …/public-key answers"
    )
    created_at: datetime
    updated_at: datetime


class SavedSubscription(SubscriptionPublic):
    warning: str | None = Field(
        None, description="Why deliveries to its target would be refused as the server is set"
    )


async def saved(state: AppState, subscription: WebhookSubscription) -> SavedSubscription:
    return SavedSubscription(
        **public(subscription).model_dump(),
        warning=await delivery_warning(subscription.target_url, state.policy),
    )


class SecretPublic(BaseModel):
    key: str = Field(description="`whsec_…`, or for ed25519 the public key `whpk_…`")


def _keys(keys: list[PublicKey]) -> list[PublicKeyPublic]:
    return [PublicKeyPublic(key=k.key, expires_at=k.expires_at) for k in keys]


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
        organization_events=subscription.organization_events or [],
        active=subscription.active,
        disabled_reason=subscription.disabled_reason,
        ordered=subscription.ordered,
        rate_limit_per_s=subscription.rate_limit_per_s,
        retry_schedule=subscription.retry_schedule,
        signature_scheme=SignatureScheme(subscription.signature_scheme),
        public_keys=_keys(public_keys_of(subscription)),
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


@router.post("", status_code=201, response_model=SavedSubscription)
async def create_subscription(
    state: State, db: DbSession, actor: CurrentActor, body: SubscriptionCreate
) -> object:
    """`warning` says when deliveries to the target would be refused as the server is set."""
    return await saved(state, await state.subscriptions.create(db, actor, body))


@router.get("/{subscription_id}", response_model=SubscriptionPublic)
async def get_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    return public(await state.subscriptions.get(db, actor, subscription_id))


@router.put("/{subscription_id}", response_model=SavedSubscription)
async def replace_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str, body: SubscriptionCreate
) -> object:
    """Replaces every field. A header given without `value` keeps its stored value."""
    return await saved(state, await state.subscriptions.replace(db, actor, subscription_id, body))


@router.patch("/{subscription_id}", response_model=SavedSubscription)
async def update_subscription(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str, body: SubscriptionUpdate
) -> object:
    """Changes only the fields given. A header given without `value` keeps its stored value."""
    return await saved(state, await state.subscriptions.update(db, actor, subscription_id, body))


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
    """What receivers verify deliveries with: the signing secret (`whsec_…`), or for an ed25519
    subscription its public key (`whpk_…`); the private key is never handed out."""
    return SecretPublic(key=await state.subscriptions.reveal_secret(db, actor, subscription_id))


@router.post("/{subscription_id}/rotate-secret", response_model=SecretPublic)
async def rotate_secret(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str
) -> object:
    """A new secret (or key pair); deliveries carry signatures of both for the next 24 hours.
    Answers what receivers verify with, as GET …/secret does."""
    return SecretPublic(key=await state.subscriptions.rotate_secret(db, actor, subscription_id))


@router.get("/{subscription_id}/public-key", response_model=PublicKeysPublic)
async def get_public_key(
    state: State, db: DbSession, subscription_id: str, response: Response
) -> object:
    """Open to anyone, without a token: the ed25519 public keys (`whpk_…`) that verify this
    subscription's `v1a` signatures, newest first; during the 24 hours after a rotation also the
    previous key, with when it stops signing. 404 alike for unknown ids and for subscriptions
    that no ed25519 key signs for (hmac ones)."""
    keys = await state.subscriptions.public_keys(db, subscription_id)
    # a receiver may cache them this long: after a rotation the previous key signs for 24 hours
    response.headers["Cache-Control"] = "public, max-age=300"
    return PublicKeysPublic(keys=_keys(keys))
