"""A subscription's own page: its signature (the scheme, the secret or the public key, and how
receivers verify), its test event (chosen and shown before it is sent), its delivery log
(web.delivery_log) and the actions on them: reveal, hide and rotate the secret or key, send the
test event, replay failed deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from labhooks.dependencies import AppState, DbSession, State
from labhooks.domain.catalogue import PING
from labhooks.domain.errors import InvalidInput
from labhooks.domain.people import Actor
from labhooks.domain.signing import PUBLIC_KEY_PREFIX, PublicKey
from labhooks.services import deliveries
from labhooks.services.notices import notices_for
from labhooks.services.subscriptions import public_keys_of
from labhooks.storage.models import WebhookSubscription, utcnow
from labhooks.web import delivery_log
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.delivery_log import log_view, open_link, pretty
from labhooks.web.forms import SCHEMES, SchemeChoice, SubscriptionForm, parse_moment
from labhooks.web.paging import url_with
from labhooks.web.rendering import is_htmx, redirect, render
from labhooks.web.subscriptions import OVERVIEW

router = APIRouter(include_in_schema=False)
router.include_router(delivery_log.router)  # setup.py mounts this module's router
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


@dataclass(frozen=True)
class TestChoice:
    event_type: str
    about: str  # what it sends, in words


@dataclass(frozen=True)
class TestEventView:
    """The Test event card: the choices, the one chosen, and the body it sends (None when the
    choice is not one)."""

    choices: list[TestChoice]
    chosen: str
    body: str | None
    errors: dict[str, str]


async def test_event_view(
    state: AppState,
    db: DbSession,
    actor: Actor,
    subscription: WebhookSubscription,
    chosen: str,
) -> TestEventView:
    channels: dict[str, str] = {}  # the channel a sample is about: the first that selects its type
    for s in subscription.selections:
        channels.setdefault(s.event_type, f"{s.channel.device.name} · {s.channel.name}")
    choices = [
        TestChoice(
            t,
            "A test event about no device: the URL is reachable and the signature verifies."
            if t == PING
            else f'Sample data about {channels[t]}, marked "test": true (a receiver that '
            "ignores the mark takes it for real).",
        )
        for t in deliveries.test_event_choices(subscription)
    ]
    try:
        test = await deliveries.test_event(db, actor, state.subscriptions, subscription.id, chosen)
    except InvalidInput as exc:
        return TestEventView(choices, chosen, None, {"event_type": exc.errors[0].message})
    return TestEventView(choices, test.event_type, pretty(test.payload), {})


async def _page(
    request: Request,
    state: State,
    db: DbSession,
    actor: Actor,
    subscription_id: str,
    status_code: int = 200,
    test_chosen: str | None = None,
    **replay: Any,
) -> Response:
    """The page; `test_chosen`: the test event asked for, when it came in a form, not the query."""
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    log = await log_view(request, state, db, actor, subscription)
    chosen = test_chosen or request.query_params.get("test_event") or PING
    test = await test_event_view(state, db, actor, subscription, chosen)
    proposed = (datetime.now(UTC) - REPLAY_DEFAULT).replace(second=0, microsecond=0)
    return render(
        request,
        "detail.html",
        actor,
        status_code=422 if log.errors and status_code == 200 else status_code,
        title="Webhook Subscription",
        subscription=subscription,
        form=SubscriptionForm.of(subscription),
        signature=signature_of(request, subscription),
        notices=await notices_for(db, actor, subscription.id),
        log=log,
        open_link=partial(open_link, request, subscription_id),
        test=test,
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


@router.get(f"{OVERVIEW}/{{subscription_id}}/secret")
async def hide_secret(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    """The secret hidden again (htmx); a browser that comes here itself gets the page."""
    await state.subscriptions.get(db, actor, subscription_id)
    if not is_htmx(request):
        return redirect(request, f"{OVERVIEW}/{subscription_id}#signature")
    return render(request, "_secret_hidden.html", actor, subscription_id=subscription_id)


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


@router.get(f"{OVERVIEW}/{{subscription_id}}/test-preview")
async def preview_test(
    request: Request,
    state: State,
    db: DbSession,
    actor: WebActor,
    subscription_id: str,
    test_event: str = PING,
) -> Response:
    """The chosen test event's body and the button that sends it (htmx); a browser that comes
    here itself gets the page with that choice."""
    if not is_htmx(request):
        return redirect(request, url_with(request, f"{OVERVIEW}/{subscription_id}", {}))
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    test = await test_event_view(state, db, actor, subscription, test_event)
    return render(request, "_test_preview.html", actor, test=test, subscription_id=subscription_id)


@router.post(f"{OVERVIEW}/{{subscription_id}}/test", dependencies=[CsrfChecked])
async def send_test(
    request: Request,
    state: State,
    db: DbSession,
    actor: WebActor,
    subscription_id: str,
    event_type: Annotated[str, Form()] = PING,
) -> Response:
    """Sends the test event the page showed; the choice stays chosen on the page it returns to."""
    try:
        await deliveries.send_test_event(
            db, actor, state.subscriptions, subscription_id, event_type
        )
    except InvalidInput:
        return await _page(request, state, db, actor, subscription_id, 422, test_chosen=event_type)
    chosen = None if event_type == PING else event_type
    page = url_with(request, f"{OVERVIEW}/{subscription_id}", {"test_event": chosen})
    return redirect(request, page, "Test event sent.")


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
