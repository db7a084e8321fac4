"""Tables, one class each. Ids are prefixed time-ordered strings (see domain.ids)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from labhooks.domain.ids import new_id

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[float]: JSON,
    }


def _id(prefix: str) -> Any:
    return mapped_column(String(40), primary_key=True, default=lambda: new_id(prefix))


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = _id("org")
    name: Mapped[str] = mapped_column(String(200), unique=True)
    webhooks_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # moved on by triggers (migration 0009) whenever what publishing reads about the
    # organisation changes: services.directory caches it per process until then
    publishing_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = _id("usr")
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(20))
    is_server_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = _id("tok")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]  # None: until revoked
    # a gateway token may be held to one device: it publishes that device's events only
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))


class TargetUrl(Base):
    __tablename__ = "target_urls"
    __table_args__ = (UniqueConstraint("organization_id", "url"),)

    id: Mapped[str] = _id("url")
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = _id("dev")
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # liveness (services.lab_rules): silent for twice the heartbeat, the device is offline
    heartbeat_s: Mapped[float | None] = mapped_column(Float)
    last_seen_at: Mapped[datetime | None]
    liveness: Mapped[str | None] = mapped_column(String(10))  # online, offline; None: not watched

    channels: Mapped[list[Channel]] = relationship(
        back_populates="device",
        cascade="all, delete-orphan",
        order_by="Channel.id",
        passive_deletes=True,
    )


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("device_id", "key"),)

    id: Mapped[str] = _id("chn")
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str | None] = mapped_column(String(50))
    trigger_events: Mapped[list[str]] = mapped_column(default=list)
    # thresholds judge its data points (services.lab_rules): read with the channel when events
    # are published, so a channel without any costs publishing no look-up
    has_thresholds: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    device: Mapped[Device] = relationship(back_populates="channels")


class ChannelGrant(Base):
    __tablename__ = "channel_grants"
    __table_args__ = (UniqueConstraint("user_id", "channel_id"),)

    id: Mapped[str] = _id("grt")
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = _id("sub")
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    target_url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    ordered: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float)
    # domain.signing.SignatureScheme: a column of its own, as the secrets (whsec_ or whsk_) only
    # show it once decrypted
    signature_scheme: Mapped[str] = mapped_column(String(16), default="hmac", server_default="hmac")
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    # the whpk_ keys of ed25519 secrets, in the clear: anyone may fetch them, and deriving them
    # would mean decrypting the private key for every anonymous request
    public_key: Mapped[str | None] = mapped_column(String(64))
    previous_public_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
    retry_schedule: Mapped[list[float] | None] = mapped_column(JSON)
    failing_since: Mapped[datetime | None]
    # operational events (subscription.disabled, delivery.exhausted…) this subscription takes,
    # about the organisation rather than a channel; None or empty: none
    organization_events: Mapped[list[str] | None] = mapped_column(JSON)

    headers: Mapped[list[SubscriptionHeader]] = relationship(
        cascade="all, delete-orphan", order_by="SubscriptionHeader.position"
    )
    selections: Mapped[list[SubscriptionSelection]] = relationship(
        cascade="all, delete-orphan", order_by="SubscriptionSelection.id"
    )


class SubscriptionHeader(Base):
    __tablename__ = "subscription_headers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    value_encrypted: Mapped[str] = mapped_column(Text)


class SubscriptionSelection(Base):
    """One (channel, trigger event) pair a subscription listens to; the fan-out index."""

    __tablename__ = "subscription_selections"
    __table_args__ = (
        UniqueConstraint("subscription_id", "channel_id", "event_type"),
        Index("ix_subscription_selections_fanout", "channel_id", "event_type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))

    channel: Mapped[Channel] = relationship(lazy="raise")


class Event(Base):
    """A published event; `payload` is the exact body every delivery of it signs and sends."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        Index("ix_events_created_at", "created_at"),  # retention purges by age
    )

    id: Mapped[str] = _id("evt")
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # what was published under the key, to tell a retry (same) from a conflict (different)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    published_by_token_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL")
    )
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Threshold(Base):
    """A channel's threshold (domain.thresholds.Rule) and where it stands (State): updated as
    the channel's data points are stored, and by the timer for holds that run out."""

    __tablename__ = "thresholds"

    id: Mapped[str] = _id("thr")
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[str] = mapped_column(String(20))
    comparator: Mapped[str] = mapped_column(String(10))
    value: Mapped[float] = mapped_column(Float)
    upper: Mapped[float | None] = mapped_column(Float)
    hysteresis: Mapped[float] = mapped_column(Float, default=0.0)
    hold_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(10), default="normal")
    since: Mapped[datetime | None]
    last_at: Mapped[datetime | None]
    last_value: Mapped[float | None] = mapped_column(Float)


class Incident(Base):
    """A threshold's incident: opened when its condition held, closed when it cleared."""

    __tablename__ = "incidents"

    id: Mapped[str] = _id("inc")
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    threshold_id: Mapped[str | None] = mapped_column(
        ForeignKey("thresholds.id", ondelete="SET NULL"), index=True
    )
    # the threshold while the incident is open, NULL once closed: one open incident per
    # threshold, whichever process opens it (NULLs are distinct on both databases)
    open_threshold_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    # an incident outlives its device and channel (closed as they go): history stays
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    level: Mapped[str] = mapped_column(String(20))
    comparator: Mapped[str] = mapped_column(String(10))
    threshold_value: Mapped[float] = mapped_column(Float)
    upper: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[datetime]
    opened_value: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[datetime | None]
    closed_value: Mapped[float | None] = mapped_column(Float)
    acknowledged_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    acknowledged_at: Mapped[datetime | None]
    acknowledgement_note: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Who did what, when, to what (never a secret value): append-only. `organization_id` is
    None for what concerns the server (organisations made by a server administrator)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_organization", "organization_id", "id"),)

    id: Mapped[str] = _id("aud")
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    actor_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(400))  # as it read then: "Ana <ana@lab.org>"
    token_id: Mapped[str | None] = mapped_column(String(40))  # the API token acted with, if any
    action: Mapped[str] = mapped_column(String(60))  # "subscription.created", "token.revoked"
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(40))
    summary: Mapped[str] = mapped_column(Text)
    changes: Mapped[dict[str, Any] | None]  # field → [before, after]; secrets never
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkerHeartbeat(Base):
    """A delivery worker's last sign of life, for `labhooks status` and /metrics."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:random
    host: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # recorded since it started


class LoginThrottle(Base):
    """Failed logins counted per key (an account's e-mail, a client address), shared by every
    process; a row lives only while its window does."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)  # attempts, counted before they are judged
    window_started_at: Mapped[datetime]


class WebSession(Base):
    """A browser's login, so that logging out (or a new password) ends it for good: the signed
    cookie names it, and a cookie whose session is gone opens nothing."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]


class Delivery(Base):
    """One event on its way to one subscription: the queue entry and its state.

    Its id is the `webhook-id` header, the same on every attempt.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ix_deliveries_due",
            "priority",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_subscription", "subscription_id", "id"),
    )

    id: Mapped[str] = _id("dlv")
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    schedule_position: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    duration_ms: Mapped[float] = mapped_column(Float)
    request_headers: Mapped[dict[str, Any]]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    response_note: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
