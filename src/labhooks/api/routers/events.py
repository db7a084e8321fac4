from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.api.deps import LEAN, Publisher, bearer_actor, json_body, json_response
from labhooks.api.routers.deliveries import DeliveryPublic
from labhooks.dependencies import AppState, DbSession, app_state
from labhooks.domain.errors import InvalidInput, field_errors_from_pydantic
from labhooks.domain.people import Actor
from labhooks.observability import logs, metrics
from labhooks.services import events as service
from labhooks.services.events import EventIn

router = APIRouter(tags=["events"])
log = logging.getLogger("labhooks.events")
_MANY = TypeAdapter(list[EventIn])
_BODY_SCHEMA = {
    "oneOf": [
        EventIn.model_json_schema(),
        {"type": "array", "items": EventIn.model_json_schema(), "maxItems": service.MAX_BATCH},
    ]
}


class SubscriptionAnswer(BaseModel):
    """The first attempt's answer of one matching subscription, for `?wait=`."""

    subscription_id: str
    delivery_id: str
    timed_out: bool
    status: str | None = None
    response_status: int | None = None
    response: Any = None
    response_body: str | None = None
    error: str | None = None


class PublishedOut(BaseModel):
    event_ids: list[str]
    duplicates: list[bool]
    deliveries_created: int
    answers: list[SubscriptionAnswer] | None = None


class EventPublic(BaseModel):
    id: str
    type: str
    device_id: str | None
    channel_id: str | None
    occurred_at: datetime
    idempotency_key: str | None
    is_test: bool
    payload: Any
    deliveries: list[DeliveryPublic]
    answers: list[SubscriptionAnswer] = Field(
        description="Each delivery's first answer, as `?wait=` gives it; a gateway token sees "
        "only these, of the events it published"
    )


def _parse(body: Any) -> tuple[list[EventIn], bool]:
    if isinstance(body, list) and len(body) > service.MAX_BATCH:
        raise InvalidInput.single("body", f"at most {service.MAX_BATCH} events per request")
    try:
        if isinstance(body, list):
            return _MANY.validate_python(body), True
        if isinstance(body, dict):
            return [EventIn.model_validate(body)], False
    except ValidationError as exc:
        raise InvalidInput(field_errors_from_pydantic(exc.errors())) from None
    raise InvalidInput.single("body", "send one event object, or a list of them")


@router.post(
    "/events",
    status_code=202,
    response_model=PublishedOut,
    openapi_extra=LEAN
    | {
        "requestBody": {"content": {"application/json": {"schema": _BODY_SCHEMA}}, "required": True}
    },
)
async def publish_events(
    request: Request,
    wait: Annotated[
        float | None,
        Query(gt=0, le=service.MAX_WAIT_S, description="Seconds to wait for targets' answers"),
    ] = None,
) -> Response:
    """Publish one event or a batch of up to 1,000; all are queued or none.

    With `wait`, answers with each matching subscription's first-attempt status and JSON answer
    (or `timed_out`) within that many seconds.
    """
    state = app_state(request)
    body = await json_body(request)  # before a connection is taken, as FastAPI reads a Body()
    async with state.database.session() as db:
        actor = await bearer_actor(db, request)
        events, indexed = _parse(body)
        with state.waiters.seat() if wait is not None else contextlib.nullcontext():
            published = await _publish(state, db, actor, events, indexed, wait)
    return json_response(published, 202)


async def _publish(
    state: AppState,
    db: AsyncSession,
    actor: Actor,
    events: list[EventIn],
    indexed: bool,
    wait: float | None,
) -> PublishedOut:
    published = await service.publish(db, actor, events, indexed)
    _report(actor, events, published)
    out = PublishedOut(
        event_ids=published.event_ids,
        duplicates=published.duplicate,
        deliveries_created=len(published.deliveries),
    )
    if wait is not None:
        answers = await service.wait_for_first_answers(
            state.database.sessions,
            [delivery_id for delivery_id, _ in published.deliveries],
            wait,
            state.recorded,
        )
        out.answers = [
            _answer(delivery_id, subscription_id, answers.get(delivery_id), actor)
            for delivery_id, subscription_id in published.deliveries
        ]
    return out


def _report(actor: Actor, events: list[EventIn], published: service.Published) -> None:
    """Counts the events stored (not the duplicates) and logs the request in one line."""
    fresh = [e for e, seen in zip(events, published.duplicate, strict=True) if not seen]
    metrics.count_accepted(e.type for e in fresh)
    logs.bind(organization_id=actor.organization_id)
    ids = published.event_ids
    log.info(
        "accepted %d events (%d duplicates), %d deliveries queued",
        len(fresh),
        len(events) - len(fresh),
        len(published.deliveries),
        extra={"event_id": ids[0]} if len(ids) == 1 else {"event_ids": ids},
    )


def _answer(
    delivery_id: str, subscription_id: str, answer: service.FirstAnswer | None, actor: Actor
) -> SubscriptionAnswer:
    if answer is None:
        return SubscriptionAnswer(
            subscription_id=subscription_id, delivery_id=delivery_id, timed_out=True
        )
    answer = service.as_seen_by(actor, answer)
    return SubscriptionAnswer(
        subscription_id=subscription_id,
        delivery_id=delivery_id,
        timed_out=False,
        status=answer.status,
        response_status=answer.response_status,
        response=answer.response_json,
        response_body=answer.response_body,
        error=answer.error,
    )


@router.get("/events/{event_id}", response_model=EventPublic)
async def get_event(db: DbSession, actor: Publisher, event_id: str) -> object:
    """The event, the body its deliveries send, each delivery with its latest outcome, and
    the targets' first answers."""
    view = await service.get_event(db, actor, event_id)
    event = view.event
    return EventPublic(
        id=event.id,
        type=event.type,
        device_id=event.device_id,
        channel_id=event.channel_id,
        occurred_at=event.occurred_at,
        idempotency_key=event.idempotency_key,
        is_test=event.is_test,
        payload=json.loads(event.payload),
        deliveries=[
            DeliveryPublic.model_validate(d, from_attributes=True) for d in view.deliveries
        ],
        answers=[_answer(a.delivery_id, a.subscription_id, a, actor) for a in view.answers],
    )
