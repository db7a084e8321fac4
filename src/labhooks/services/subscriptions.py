"""Webhook subscriptions: every rule of SPEC §2 applied on create, replace, update and toggle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from labhooks.domain.catalogue import ORGANIZATION_EVENT_TYPES, SUBSCRIPTION_SECRET_ROTATED
from labhooks.domain.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    WebhooksDisabled,
)
from labhooks.domain.headers import validate_headers
from labhooks.domain.people import Actor
from labhooks.domain.signing import PublicKey, SignatureScheme, public_key_of, public_keys
from labhooks.domain.targets import first_match
from labhooks.security import SecretBox, new_signing_key
from labhooks.services import audit
from labhooks.services.devices import accessible_channels
from labhooks.services.fanout import about_subscription, fan_out_to_organization
from labhooks.services.inputs import Input
from labhooks.services.organizations import load_organization
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.services.target_urls import parse_field, registered_urls
from labhooks.services.tokens import actor_for
from labhooks.storage import queue
from labhooks.storage.models import (
    Channel,
    SubscriptionHeader,
    SubscriptionSelection,
    User,
    WebhookSubscription,
    utcnow,
)
from labhooks.storage.queue import OrganizationEvent

PREVIOUS_SECRET_GRACE = timedelta(hours=24)


RetrySchedule = Annotated[
    list[Annotated[float, Field(ge=0, le=7 * 86400)]],
    Field(
        min_length=1,
        max_length=50,
        description="Seconds before each attempt, overriding the server's schedule",
    ),
]


class HeaderIn(Input):
    key: str = Field(max_length=200)
    value: str | None = Field(
        None,
        max_length=16 * 1024,
        description="On update, leave out to keep the stored value of the header with this key",
    )


class ChannelSelectionIn(Input):
    channel_id: str = Field(max_length=40)
    events: list[str] = Field(min_length=1, max_length=50)


class SubscriptionCreate(Input):
    """Also the body of PUT, which replaces every field (left-out fields take these defaults)."""

    target_url: str = Field(max_length=4096)
    headers: list[HeaderIn] = Field(default_factory=list, max_length=100)
    # required, so a body without it has it named with every other missing field
    channels: list[ChannelSelectionIn] = Field(
        max_length=1000,
        description="Channels with at least one event each; `[]` when the subscription takes "
        "`organization_events` only",
    )
    organization_events: list[str] = Field(
        default_factory=list,
        max_length=len(ORGANIZATION_EVENT_TYPES),
        description="Operational events about the organisation's subscriptions that this "
        "subscription receives (organisation administrators only): "
        + ", ".join(ORGANIZATION_EVENT_TYPES),
    )
    active: bool = True
    description: str | None = Field(None, max_length=2000)
    ordered: bool = False
    rate_limit_per_s: float | None = Field(None, gt=0, le=10_000)
    retry_schedule: RetrySchedule | None = None
    signature_scheme: SignatureScheme = Field(
        SignatureScheme.HMAC,
        description="hmac: `v1` signatures under a shared `whsec_` secret; ed25519: `v1a` "
        "signatures that receivers verify with the public key. A PUT without it keeps the scheme.",
    )


class SubscriptionUpdate(Input):
    """PATCH: only the fields given change."""

    target_url: str | None = Field(None, max_length=4096)
    headers: list[HeaderIn] | None = Field(None, max_length=100)
    channels: list[ChannelSelectionIn] | None = Field(None, max_length=1000)
    organization_events: list[str] | None = Field(None, max_length=len(ORGANIZATION_EVENT_TYPES))
    active: bool | None = None
    description: str | None = Field(None, max_length=2000)
    ordered: bool | None = None
    rate_limit_per_s: float | None = Field(None, gt=0, le=10_000)
    retry_schedule: RetrySchedule | None = None
    signature_scheme: SignatureScheme | None = Field(
        None, description="Another scheme makes a new key; the old one signs for 24 hours more"
    )


@dataclass(frozen=True)
class _Checked:
    target_url: str | None
    headers: list[tuple[str, str]] | None  # (name, encrypted value)
    selections: list[tuple[str, str]] | None  # (channel_id, event_type)
    organization_events: list[str] | None = None  # None: unchanged


async def delete_subscriptions(db: AsyncSession, subscription_ids: Sequence[str]) -> None:
    """Soft delete, in the caller's transaction: the delivery history stays readable for the
    retention period; queued deliveries are cancelled; nothing more is sent."""
    await db.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id.in_(subscription_ids))
        .values(deleted_at=utcnow(), active=False)
        .execution_options(synchronize_session=False)
    )
    await queue.cancel(db, subscription_ids)


async def owned_by(db: AsyncSession, user_id: str) -> list[str]:
    """The ids of the user's subscriptions that are not deleted."""
    return list(
        await db.scalars(
            select(WebhookSubscription.id).where(
                WebhookSubscription.owner_id == user_id, WebhookSubscription.deleted_at.is_(None)
            )
        )
    )


def public_keys_of(subscription: WebhookSubscription) -> list[PublicKey]:
    return public_keys(
        subscription.public_key,
        subscription.previous_public_key,
        subscription.previous_secret_expires_at,
        utcnow(),
    )


class SubscriptionService:
    """Bound to the SecretBox that encrypts header values and signing secrets at rest."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _query() -> Select[WebhookSubscription]:
        return select(WebhookSubscription).options(
            selectinload(WebhookSubscription.headers),
            selectinload(WebhookSubscription.selections)
            .selectinload(SubscriptionSelection.channel)
            .selectinload(Channel.device),
        )

    @staticmethod
    def _visible_to(actor: Actor) -> Select[WebhookSubscription]:
        statement = SubscriptionService._query().where(
            WebhookSubscription.organization_id == actor.require_organization(),
            WebhookSubscription.deleted_at.is_(None),
        )
        if not actor.is_org_admin:
            statement = statement.where(WebhookSubscription.owner_id == actor.user_id)
        return statement

    async def list_for(
        self, db: AsyncSession, actor: Actor, page: PageRequest
    ) -> Page[WebhookSubscription]:
        return await fetch_page(db, self._visible_to(actor), WebhookSubscription.id, page)

    async def get(
        self, db: AsyncSession, actor: Actor, subscription_id: str
    ) -> WebhookSubscription:
        subscription = await db.scalar(
            self._visible_to(actor)
            .where(WebhookSubscription.id == subscription_id)
            .execution_options(populate_existing=True)
        )
        if subscription is None:
            raise NotFound("Webhook subscription")
        return subscription

    # -- writing ---------------------------------------------------------------------------

    async def create(
        self, db: AsyncSession, actor: Actor, data: SubscriptionCreate
    ) -> WebhookSubscription:
        organization_id = actor.require_organization()
        await self._require_webhooks_enabled(db, organization_id)
        checked = await self._check(
            db,
            actor,
            actor,
            data.target_url,
            data.headers,
            data.channels,
            {},
            organization_events=data.organization_events,
        )
        subscription = WebhookSubscription(
            organization_id=organization_id,
            owner_id=actor.user_id,
            active=data.active,
            description=data.description,
            ordered=data.ordered,
            rate_limit_per_s=data.rate_limit_per_s,
            retry_schedule=data.retry_schedule,
        )
        self._new_key(subscription, data.signature_scheme)
        self._apply(subscription, checked)
        db.add(subscription)
        await db.flush()  # its id, for the audit entry
        await audit.record(
            db,
            actor,
            "subscription.created",
            "subscription",
            subscription.id,
            f"Created the webhook subscription to {subscription.target_url}",
            audit.diff({}, self._audit_state(subscription)),
        )
        await db.commit()
        return await self.get(db, actor, subscription.id)

    async def replace(
        self, db: AsyncSession, actor: Actor, subscription_id: str, data: SubscriptionCreate
    ) -> WebhookSubscription:
        fields = data.model_dump()
        if "signature_scheme" not in data.model_fields_set:
            del fields["signature_scheme"]  # a switch makes new keys: never by leaving it out
        return await self.update(
            db, actor, subscription_id, SubscriptionUpdate.model_validate(fields)
        )

    async def update(
        self, db: AsyncSession, actor: Actor, subscription_id: str, data: SubscriptionUpdate
    ) -> WebhookSubscription:
        subscription = await self.get(db, actor, subscription_id)
        before = self._audit_state(subscription)
        owner = await self._owner(db, subscription)
        stored = {h.name.lower(): h.value_encrypted for h in subscription.headers}
        checked = await self._check(
            db,
            actor,
            owner,
            data.target_url,
            data.headers,
            data.channels,
            stored,
            organization_events=data.organization_events,
            current=subscription,
        )
        fields = data.model_fields_set
        if data.active and not subscription.active:
            await self._require_webhooks_enabled(db, subscription.organization_id)
            subscription.disabled_reason = None
        if data.active is not None:
            subscription.active = data.active
        if "description" in fields:
            subscription.description = data.description
        if data.ordered is not None:
            subscription.ordered = data.ordered
        if "rate_limit_per_s" in fields:
            subscription.rate_limit_per_s = data.rate_limit_per_s
        if "retry_schedule" in fields:
            subscription.retry_schedule = data.retry_schedule
        scheme = data.signature_scheme
        if scheme is not None and scheme != subscription.signature_scheme:
            self._new_key(subscription, scheme)
        self._apply(subscription, checked)
        if changes := audit.diff(before, self._audit_state(subscription)):
            await audit.record(
                db,
                actor,
                audit.subscription_change_action(changes),
                "subscription",
                subscription.id,
                f"Changed the webhook subscription to {subscription.target_url}: "
                + ", ".join(changes),
                changes,
            )
        subscription.updated_at = utcnow()
        await queue.wake(db)
        await db.commit()
        return await self.get(db, actor, subscription_id)

    async def set_active(
        self, db: AsyncSession, actor: Actor, subscription_id: str, active: bool
    ) -> WebhookSubscription:
        subscription = await self.get(db, actor, subscription_id)
        if active and not subscription.active:
            await self._require_webhooks_enabled(db, subscription.organization_id)
            registered = await registered_urls(db, subscription.organization_id)
            if first_match(registered, parse_field(subscription.target_url, "target_url")) is None:
                raise Conflict(
                    f"{subscription.target_url} is no longer a registered target URL; "
                    "change the target URL or ask an organisation administrator to register it.",
                    field="target_url",
                )
            subscription.disabled_reason = None
        if active != subscription.active:
            verb = "activated" if active else "deactivated"
            await audit.record(
                db,
                actor,
                f"subscription.{verb}",
                "subscription",
                subscription.id,
                f"{verb.capitalize()} the webhook subscription to {subscription.target_url}",
                {"active": [subscription.active, active]},
            )
        subscription.active = active
        subscription.updated_at = utcnow()
        if active:
            await queue.wake(db)  # its held deliveries go out now
        await db.commit()
        return await self.get(db, actor, subscription_id)

    async def delete(self, db: AsyncSession, actor: Actor, subscription_id: str) -> None:
        subscription = await self.get(db, actor, subscription_id)
        await audit.record(
            db,
            actor,
            "subscription.deleted",
            "subscription",
            subscription.id,
            f"Deleted the webhook subscription to {subscription.target_url}",
            audit.diff(self._audit_state(subscription), {}),
        )
        await delete_subscriptions(db, [subscription.id])
        await db.commit()

    async def reveal_secret(self, db: AsyncSession, actor: Actor, subscription_id: str) -> str:
        """What receivers verify with: the `whsec_` secret, or the `whpk_` public key of an
        ed25519 subscription (its private key never leaves labhooks)."""
        subscription = await self.get(db, actor, subscription_id)
        revealed = subscription.public_key or self.box.decrypt(subscription.secret_encrypted)
        what = "public key" if subscription.public_key else "signing secret"
        await audit.record(
            db,
            actor,
            "subscription.secret_revealed",
            "subscription",
            subscription.id,
            f"Revealed the {what} of the webhook subscription to {subscription.target_url}",
        )
        await db.commit()
        return revealed

    async def rotate_secret(self, db: AsyncSession, actor: Actor, subscription_id: str) -> str:
        """A new secret or key pair; the old one keeps signing alongside it for 24 hours.
        Returns what receivers verify with, as `reveal_secret` does."""
        subscription = await self.get(db, actor, subscription_id)
        secret = self._new_key(subscription, SignatureScheme(subscription.signature_scheme))
        await audit.record(
            db,
            actor,
            "subscription.secret_rotated",
            "subscription",
            subscription.id,
            f"Rotated the signing secret of the webhook subscription to {subscription.target_url}",
            {"secret": [audit.HIDDEN, audit.HIDDEN]},
        )
        expires = subscription.previous_secret_expires_at
        await fan_out_to_organization(
            db,
            [
                OrganizationEvent(
                    subscription.organization_id,
                    SUBSCRIPTION_SECRET_ROTATED,
                    about_subscription(subscription),
                    {
                        "signature_scheme": subscription.signature_scheme,
                        "previous_secret_expires_at": expires.isoformat() if expires else None,
                        "rotated_by": actor.user_id,
                    },
                )
            ],
        )
        await db.commit()
        return subscription.public_key or secret

    @staticmethod
    async def public_keys(db: AsyncSession, subscription_id: str) -> list[PublicKey]:
        """For anyone, no actor: public keys are not secret, and receivers fetch them without an
        account. Unknown ids, deleted subscriptions and those no ed25519 key signs for now are
        alike NotFound, so the answer tells nothing else."""
        subscription = await db.get(WebhookSubscription, subscription_id)
        keys = public_keys_of(subscription) if subscription and not subscription.deleted_at else []
        if not keys:
            raise NotFound("Public key")
        return keys

    def _new_key(self, subscription: WebhookSubscription, scheme: SignatureScheme) -> str:
        """A new secret or key pair; the one it replaces, of either scheme, keeps signing for
        PREVIOUS_SECRET_GRACE, so receivers verify throughout a rotation or a switch."""
        secret = new_signing_key(scheme)
        if subscription.secret_encrypted:  # not a new subscription
            subscription.previous_secret_encrypted = subscription.secret_encrypted
            subscription.previous_public_key = subscription.public_key
            subscription.previous_secret_expires_at = utcnow() + PREVIOUS_SECRET_GRACE
        subscription.signature_scheme = scheme.value
        subscription.secret_encrypted = self.box.encrypt(secret)
        subscription.public_key = public_key_of(secret)
        subscription.updated_at = utcnow()
        return secret

    def header_value(self, header: SubscriptionHeader) -> str:
        return self.box.decrypt(header.value_encrypted)

    def _audit_state(self, subscription: WebhookSubscription) -> dict[str, Any]:
        return audit.subscription_state(subscription, self.box.decrypt)

    # -- rules -----------------------------------------------------------------------------

    @staticmethod
    async def _require_webhooks_enabled(db: AsyncSession, organization_id: str) -> None:
        organization = await load_organization(db, organization_id)
        if not organization.webhooks_enabled:
            raise WebhooksDisabled(organization.name)

    @staticmethod
    async def _owner(db: AsyncSession, subscription: WebhookSubscription) -> Actor:
        owner = await db.get(User, subscription.owner_id) if subscription.owner_id else None
        if owner is None:
            raise NotFound("Webhook subscription")
        return actor_for(owner)

    async def _check(
        self,
        db: AsyncSession,
        actor: Actor,
        owner: Actor,
        target_url: str | None,
        headers: list[HeaderIn] | None,
        channels: list[ChannelSelectionIn] | None,
        stored_headers: dict[str, str],
        organization_events: list[str] | None = None,
        current: WebhookSubscription | None = None,
    ) -> _Checked:
        """Every field error at once, so a form can show them all; nothing is written here.
        `current`: the subscription being changed, None when one is created."""
        errors: list[FieldError] = []
        events = self._check_organization_events(actor, owner, organization_events, errors)
        if events is None and current is not None:
            events = current.organization_events or []
        takes_events = bool(events)
        url = None
        if target_url is not None:
            try:
                url = await self._check_target(db, owner, target_url)
            except InvalidInput as exc:
                errors += exc.errors
        resolved_headers = None
        if headers is not None:
            resolved_headers = self._resolve_headers(headers, stored_headers, errors)
        selections = None
        if channels is not None:
            # Checked here rather than by the model, so that an empty selection is reported
            # together with the other fields' errors.
            if not channels and not takes_events:
                errors.append(
                    FieldError(
                        "channels",
                        "Choose at least one channel and at least one event"
                        + (", or organisation events." if owner.is_org_admin else "."),
                    )
                )
            selections = await self._check_channels(db, owner, actor, channels, errors)
        elif current is not None and not current.selections and not takes_events:
            errors.append(
                FieldError(
                    "organization_events",
                    "A subscription without channels needs at least one organisation event.",
                )
            )
        if errors:
            raise InvalidInput(errors)
        return _Checked(
            url, resolved_headers, selections, events if organization_events is not None else None
        )

    @staticmethod
    def _check_organization_events(
        actor: Actor, owner: Actor, wanted: list[str] | None, errors: list[FieldError]
    ) -> list[str] | None:
        """The operational events asked for, each once; None when not asked. Only an
        organisation administrator may ask, for a subscription an administrator owns (what
        they report concerns every subscription of the organisation)."""
        if wanted is None:
            return None
        if wanted and not actor.is_org_admin:
            raise PermissionDenied(
                "organization_events: only organisation administrators may subscribe to "
                "operational events"
            )
        if wanted and not owner.is_org_admin:
            errors.append(
                FieldError(
                    "organization_events",
                    "the subscription's owner is not an organisation administrator",
                )
            )
        known = ", ".join(ORGANIZATION_EVENT_TYPES)
        for i, name in enumerate(wanted):
            if name not in ORGANIZATION_EVENT_TYPES:
                errors.append(
                    FieldError(
                        f"organization_events.{i}",
                        f"{name!r} is not an operational event; they are {known}",
                    )
                )
        return list(dict.fromkeys(wanted))

    @staticmethod
    async def _check_target(db: AsyncSession, owner: Actor, raw: str) -> str:
        target = parse_field(raw, "target_url")
        organization_id = owner.require_organization()
        if first_match(await registered_urls(db, organization_id), target) is None:
            raise InvalidInput.single(
                "target_url",
                f"{target} is not registered for your organisation; an organisation "
                "administrator registers target URLs (exactly, or as a prefix ending in '/')",
            )
        return str(target)

    def _resolve_headers(
        self, headers: list[HeaderIn], stored: dict[str, str], errors: list[FieldError]
    ) -> list[tuple[str, str]]:
        plain: list[tuple[str, str]] = []
        for index, header in enumerate(headers):
            key = header.key.strip()
            if header.value is not None:
                plain.append((key, header.value.strip()))
            elif key.lower() in stored:
                plain.append((key, self.box.decrypt(stored[key.lower()])))
            else:
                errors.append(
                    FieldError(f"headers.{index}.value", "enter a value for this new header")
                )
                plain.append((key, "-"))
        errors += validate_headers(plain)
        return [(name, self.box.encrypt(value)) for name, value in plain]

    @staticmethod
    async def _check_channels(
        db: AsyncSession,
        owner: Actor,
        actor: Actor,
        channels: list[ChannelSelectionIn],
        errors: list[FieldError],
    ) -> list[tuple[str, str]]:
        wanted = {selection.channel_id for selection in channels}
        found = await db.scalars(accessible_channels(owner).where(Channel.id.in_(wanted)))
        by_id = {channel.id: channel for channel in found}
        who = "you" if owner.user_id == actor.user_id else "the subscription's owner"
        pairs: dict[tuple[str, str], None] = {}
        for i, selection in enumerate(channels):
            channel = by_id.get(selection.channel_id)
            if channel is None:
                errors.append(
                    FieldError(
                        f"channels.{i}.channel_id", f"no channel with this id that {who} can access"
                    )
                )
                continue
            for j, event_type in enumerate(selection.events):
                if event_type not in channel.trigger_events:
                    offered = ", ".join(channel.trigger_events) or "no events"
                    errors.append(
                        FieldError(
                            f"channels.{i}.events.{j}",
                            f"channel {channel.name!r} does not offer {event_type!r}; "
                            f"it offers {offered}",
                        )
                    )
                else:
                    pairs[(channel.id, event_type)] = None
        return list(pairs)

    @staticmethod
    def _apply(subscription: WebhookSubscription, checked: _Checked) -> None:
        if checked.target_url is not None:
            subscription.target_url = checked.target_url
        if checked.headers is not None:
            subscription.headers = [
                SubscriptionHeader(position=i, name=name, value_encrypted=value)
                for i, (name, value) in enumerate(checked.headers)
            ]
        if checked.organization_events is not None:
            subscription.organization_events = checked.organization_events or None
        if checked.selections is not None:
            existing = {(s.channel_id, s.event_type): s for s in subscription.selections}
            subscription.selections = [
                existing.get(pair) or SubscriptionSelection(channel_id=pair[0], event_type=pair[1])
                for pair in checked.selections
            ]
