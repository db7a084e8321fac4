"""A subscription's own page: its signature (the scheme, the secret or the public key), its
delivery log (newest first, a page at a time) and the actions on them: reveal and rotate the
secret or key, send a test event, resend, replay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession, State
from labhooks.domain.errors import Conflict, InvalidInput
from labhooks.domain.outcomes import DeliveryStatus
from labhooks.domain.people import Actor
from labhooks.domain.signing import PUBLIC_KEY_PREFIX, PublicKey
from labhooks.services import deliveries
from labhooks.services.subscriptions import public_keys_of
from labhooks.storage.models import WebhookSubscription, utcnow
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import SCHEMES, SchemeChoice, SubscriptionForm, parse_moment
from labhooks.web.paging import back, listing
from labhooks.web.rendering import redirect, render
from labhooks.web.subscriptions import OVERVIEW

router = APIRouter(include_in_schema=False)
REPLAY_DEFAULT = timedelta(hours=24)  # the form proposes replaying the last day's failures


@dataclass(frozen=True)
class Signature:
    """The page's Signature card: what receivers verify with, and what still signs beside it."""

    scheme: SchemeChoice
    public_key: str | None  # ed25519: the current key, shown openly (it is not secret)
    previous_key: PublicKey | None  # an ed25519 key still signing after a rotation or a switch
    previous_secret_until: datetime | None  # an HMAC secret still signing after one
    public_key_url: str | None  # where anyone fetches the keys, while any signs

    @property
    def noun(self) -> str:
        return "key" if self.public_key else "secret"


def signature_of(request: Request, subscription: WebhookSubscription) -> Signature:
    keys = public_keys_of(subscription)
    expires = subscription.previous_secret_expires_at
    url = None
    if keys:  # absolute, for receivers elsewhere: the route is the API's, open to anyone
        url = str(request.url_for("get_public_key", subscription_id=subscription.id))
    return Signature(
        scheme=SCHEMES[subscription.signature_scheme],
        public_key=subscription.public_key,
        previous_key=next((k for k in keys if k.expires_at), None),
        previous_secret_until=(
            expires
            if expires and expires > utcnow() and not subscription.previous_public_key
            else None
        ),
        public_key_url=url,
    )


async def _page(
    request: Request,
    state: State,
    db: DbSession,
    actor: Actor,
    subscription_id: str,
    status_code: int = 200,
    **replay: Any,
) -> Response:
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    status = request.query_params.get("status") or None
    newest_first = partial(
        deliveries.recent_deliveries, db, actor, state.subscriptions, subscription_id, status
    )
    path = f"{OVERVIEW}/{subscription_id}"
    log = await listing(request, path, "before", newest_first, anchor="deliveries")
    ids = [d.id for d in log.items]
    proposed = (datetime.now(UTC) - REPLAY_DEFAULT).replace(second=0, microsecond=0)
    return render(
        request,
        "detail.html",
        actor,
        status_code=status_code,
        title="Webhook Subscription",
        subscription=subscription,
        form=SubscriptionForm.of(subscription),
        signature=signature_of(request, subscription),
        log=log,
        attempts=await deliveries.attempts_of(db, ids),
        bodies=await deliveries.bodies_of(db, ids),
        status=status,
        statuses=list(DeliveryStatus),
        proposed=proposed,
        **replay,
    )


@router.get(f"{OVERVIEW}/{{subscription_id}}")
async def detail(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    return await _page(request, state, db, actor, subscription_id)


@router.post(f"{OVERVIEW}/{{subscription_id}}/secret", dependencies=[CsrfChecked])
async def reveal_secret(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    secret = await state.subscriptions.reveal_secret(db, actor, subscription_id)
    return render(request, "_secret.html", actor, secret=secret, subscription_id=subscription_id)


@router.post(f"{OVERVIEW}/{{subscription_id}}/rotate-secret", dependencies=[CsrfChecked])
async def rotate_secret(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    new = await state.subscriptions.rotate_secret(db, actor, subscription_id)
    noun = "key" if new.startswith(PUBLIC_KEY_PREFIX) else "secret"
    return redirect(
        request,
        f"{OVERVIEW}/{subscription_id}",
        f"{noun.capitalize()} rotated. Deliveries carry signatures of both {noun}s for the next "
        "24 hours.",
    )


@router.post(f"{OVERVIEW}/{{subscription_id}}/test", dependencies=[CsrfChecked])
async def send_test(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    await deliveries.send_test_event(db, actor, state.subscriptions, subscription_id, None)
    return redirect(request, f"{OVERVIEW}/{subscription_id}", "Test event sent.")


@router.post(f"{OVERVIEW}/{{subscription_id}}/replay", dependencies=[CsrfChecked])
async def replay(
    request: Request,
    state: State,
    db: DbSession,
    actor: WebActor,
    subscription_id: str,
    since: Annotated[str, Form()] = "",
    utc_offset: Annotated[str, Form()] = "",
) -> Response:
    """`since` as the browser's datetime-local field sends it; `utc_offset` (minutes east of
    UTC, at that moment) is filled in by the page's script. Without it the moment is UTC, as
    the page without JavaScript says."""
    try:
        moment = parse_moment(since, utc_offset)
    except InvalidInput as exc:
        errors = {"since": exc.errors[0].message}
        return await _page(
            request, state, db, actor, subscription_id, 422, replay_errors=errors, since=since
        )
    count = await deliveries.replay_failed(db, actor, state.subscriptions, subscription_id, moment)
    noun = "delivery" if count == 1 else "deliveries"
    return redirect(
        request,
        f"{OVERVIEW}/{subscription_id}",
        f"{count} failed {noun} queued again (created since {moment:%Y-%m-%d %H:%M} UTC).",
    )


@router.post("/deliveries/{delivery_id}/resend", dependencies=[CsrfChecked])
async def resend(request: Request, db: DbSession, actor: WebActor, delivery_id: str) -> Response:
    try:
        delivery = await deliveries.resend(db, actor, delivery_id)
    except Conflict as exc:
        delivery_row, _, _ = await deliveries.get_delivery(db, actor, delivery_id)
        return redirect(
            request, back(request, f"{OVERVIEW}/{delivery_row.subscription_id}"), exc.detail
        )
    page = back(request, f"{OVERVIEW}/{delivery.subscription_id}")
    return redirect(request, page, "Delivery queued again.")
