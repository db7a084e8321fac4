from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession, State
from labhooks.services import deliveries as service
from labhooks.services.deliveries import ReplayIn, TestEventIn

router = APIRouter(tags=["deliveries"])


class DeliveryPublic(BaseModel):
    id: str
    subscription_id: str
    event_id: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None


class AttemptPublic(BaseModel):
    number: int
    started_at: datetime
    duration_ms: float
    request_headers: dict[str, str]
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: str | None
    response_note: str | None = Field(
        description="What labhooks escaped to store the answer (bytes that are not UTF-8 "
        "text, NUL), if anything"
    )
    error: str | None


class DeliveryDetail(DeliveryPublic):
    request_body: Any
    attempts: list[AttemptPublic]


class ReplayOut(BaseModel):
    deliveries_queued: int


@router.get(
    "/webhook-subscriptions/{subscription_id}/deliveries",
    response_model=PageOut[DeliveryPublic],
)
async def list_deliveries(
    state: State,
    db: DbSession,
    actor: CurrentActor,
    paging: Paging,
    subscription_id: str,
    status: Annotated[
        str | None, Query(description="pending, succeeded, failed or cancelled")
    ] = None,
) -> object:
    page = await service.list_deliveries(
        db, actor, state.subscriptions, subscription_id, paging, status
    )
    return page_out(page, DeliveryPublic)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(db: DbSession, actor: CurrentActor, delivery_id: str) -> object:
    """The delivery with every attempt: request headers (custom values masked), response
    status, headers, the first 64 KiB of the body, or the error, and the duration."""
    delivery, attempts, event = await service.get_delivery(db, actor, delivery_id)
    return DeliveryDetail.model_validate(
        {
            **DeliveryPublic.model_validate(delivery, from_attributes=True).model_dump(),
            "request_body": json.loads(event.payload),
            "attempts": [AttemptPublic.model_validate(a, from_attributes=True) for a in attempts],
        }
    )


@router.post("/deliveries/{delivery_id}/resend", status_code=202, response_model=DeliveryPublic)
async def resend_delivery(db: DbSession, actor: CurrentActor, delivery_id: str) -> object:
    """Queue a finished delivery again (same webhook-id, a fresh retry schedule)."""
    return await service.resend(db, actor, delivery_id)


@router.post(
    "/webhook-subscriptions/{subscription_id}/replay", status_code=202, response_model=ReplayOut
)
async def replay_failed(
    state: State, db: DbSession, actor: CurrentActor, subscription_id: str, body: ReplayIn
) -> object:
    """Queue again every failed delivery of this subscription created since `since`."""
    count = await service.replay_failed(db, actor, state.subscriptions, subscription_id, body.since)
    return ReplayOut(deliveries_queued=count)


class TestEventPreview(BaseModel):
    event_type: str
    choices: list[str] = Field(description="`ping`, then each event type the subscription selects")
    body: Any = Field(description="What would be sent (its event id is made anew when sent)")


@router.get("/webhook-subscriptions/{subscription_id}/test", response_model=TestEventPreview)
async def preview_test_event(
    state: State,
    db: DbSession,
    actor: CurrentActor,
    subscription_id: str,
    event_type: Annotated[str | None, Query(description="Default: ping")] = None,
) -> object:
    """The test event `POST …/test` would send: a `ping` by default, or a sample of a type the
    subscription selects."""
    chosen = await service.test_event(db, actor, state.subscriptions, subscription_id, event_type)
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    return TestEventPreview(
        event_type=chosen.event_type,
        choices=service.test_event_choices(subscription),
        body=json.loads(chosen.payload),
    )


@router.post(
    "/webhook-subscriptions/{subscription_id}/test", status_code=202, response_model=DeliveryPublic
)
async def send_test_event(
    state: State,
    db: DbSession,
    actor: CurrentActor,
    subscription_id: str,
    body: Annotated[TestEventIn | None, Body()] = None,
) -> object:
    """Send a test event to this subscription alone: a `ping` by default (about no device), or
    a sample of a type it selects, marked `"test": true`."""
    event_type = body.event_type if body else None
    return await service.send_test_event(
        db, actor, state.subscriptions, subscription_id, event_type
    )
