"""The seed's screens: the Webhook Subscriptions overview, the add/edit form with its channel
dialog, and a subscription's own page with its secret and delivery log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from labhooks.dependencies import DbSession, State
from labhooks.domain.errors import Conflict, InvalidInput
from labhooks.domain.outcomes import DeliveryStatus
from labhooks.services import deliveries
from labhooks.services.devices import list_accessible_channels
from labhooks.services.organizations import load_organization
from labhooks.services.pages import PageRequest
from labhooks.services.subscriptions import SubscriptionCreate, SubscriptionUpdate
from labhooks.services.target_urls import list_target_urls
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import HeaderRow, SubscriptionForm
from labhooks.web.rendering import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)
OVERVIEW = "/webhook-subscriptions"
LIST_ALL = PageRequest(limit=200)


@router.get("/")
async def home(actor: WebActor) -> Response:
    return RedirectResponse("/admin" if actor.organization_id is None else OVERVIEW)


@router.get(OVERVIEW)
async def overview(request: Request, state: State, db: DbSession, actor: WebActor) -> Response:
    if actor.organization_id is None:
        return redirect(request, "/admin")
    organization = await load_organization(db, actor.organization_id)
    page = await state.subscriptions.list_for(db, actor, LIST_ALL)
    latest = await deliveries.latest_by_subscription(db, [s.id for s in page.items])
    return render(
        request,
        "overview.html",
        actor,
        title="Webhook Subscriptions",
        organization=organization,
        subscriptions=page.items,
        latest=latest,
    )


@router.post(f"{OVERVIEW}/{{subscription_id}}/toggle", dependencies=[CsrfChecked])
async def toggle(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    problem = None
    try:
        subscription = await state.subscriptions.set_active(
            db, actor, subscription_id, not subscription.active
        )
    except Conflict as exc:
        problem = exc.detail
    if not is_htmx(request):
        return redirect(request, OVERVIEW, problem)
    latest = await deliveries.latest_by_subscription(db, [subscription_id])
    return render(
        request,
        "_subscription_row.html",
        actor,
        subscription=subscription,
        latest=latest,
        problem=problem,
    )


@router.post(f"{OVERVIEW}/{{subscription_id}}/delete", dependencies=[CsrfChecked])
async def delete(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    await state.subscriptions.delete(db, actor, subscription_id)
    return redirect(request, OVERVIEW, "Webhook subscription deleted.")


async def _form_page(
    request: Request,
    db: DbSession,
    actor: WebActor,
    form: SubscriptionForm,
    subscription_id: str | None,
    status_code: int = 200,
) -> Response:
    registered = await list_target_urls(db, actor, LIST_ALL)
    if not form.headers:
        form.headers.append(HeaderRow())
    title = "Edit Webhook Subscription" if subscription_id else "Add new Webhook Subscription"
    return render(
        request,
        "form.html",
        actor,
        status_code=status_code,
        title=title,
        form=form,
        subscription_id=subscription_id,
        registered=[u.url for u in registered.items],
    )


@router.get(f"{OVERVIEW}/new")
async def new(request: Request, db: DbSession, actor: WebActor) -> Response:
    return await _form_page(request, db, actor, SubscriptionForm(), None)


@router.post(f"{OVERVIEW}/new", dependencies=[CsrfChecked])
async def create(request: Request, state: State, db: DbSession, actor: WebActor) -> Response:
    form = SubscriptionForm.parse(await request.form(), stored_keys=set())
    try:
        await state.subscriptions.create(db, actor, form.to_input(SubscriptionCreate, active=True))
    except (InvalidInput, Conflict) as exc:
        return await _refused(request, db, actor, form, None, exc)
    return redirect(request, OVERVIEW, "Webhook subscription added.")


@router.get(f"{OVERVIEW}/{{subscription_id}}/edit")
async def edit(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    return await _form_page(request, db, actor, SubscriptionForm.of(subscription), subscription_id)


@router.post(f"{OVERVIEW}/{{subscription_id}}/edit", dependencies=[CsrfChecked])
async def update(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    stored = {h.name.lower() for h in subscription.headers}
    form = SubscriptionForm.parse(await request.form(), stored_keys=stored)
    try:
        data = form.to_input(SubscriptionUpdate)
        await state.subscriptions.update(db, actor, subscription_id, data)
    except (InvalidInput, Conflict) as exc:
        return await _refused(request, db, actor, form, subscription_id, exc)
    return redirect(request, OVERVIEW, "Webhook subscription saved.")


async def _refused(
    request: Request,
    db: DbSession,
    actor: WebActor,
    form: SubscriptionForm,
    subscription_id: str | None,
    error: InvalidInput | Conflict,
) -> Response:
    """The form again, everything typed kept, each message beside its field."""
    form.show(error.errors or [])
    if not error.errors:
        form.errors["form"] = error.detail
    await form.name_selection(db, actor)
    return await _form_page(request, db, actor, form, subscription_id, status_code=422)


@router.get(f"{OVERVIEW}/channel-search")
async def channel_search(
    request: Request,
    db: DbSession,
    actor: WebActor,
    device_q: str = "",
    selected: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI reads the default)
) -> Response:
    """The dialog's results: channels the user may access on devices matching the name."""
    page = await list_accessible_channels(db, actor, LIST_ALL, device_q.strip() or None)
    devices: dict[str, list[object]] = {}
    for channel in sorted(page.items, key=lambda c: (c.device.name.lower(), c.name.lower())):
        devices.setdefault(channel.device.name, []).append(channel)
    return render(
        request,
        "_channel_results.html",
        actor,
        devices=devices,
        selected=set(selected),
        query=device_q,
    )


@router.get(f"{OVERVIEW}/{{subscription_id}}")
async def detail(
    request: Request,
    state: State,
    db: DbSession,
    actor: WebActor,
    subscription_id: str,
    status: str | None = None,
) -> Response:
    subscription = await state.subscriptions.get(db, actor, subscription_id)
    status = status or None
    log = await deliveries.recent_deliveries(
        db, actor, state.subscriptions, subscription_id, status
    )
    attempts = await deliveries.attempts_of(db, [d.id for d in log])
    bodies = await deliveries.bodies_of(db, [d.id for d in log])
    return render(
        request,
        "detail.html",
        actor,
        title="Webhook Subscription",
        subscription=subscription,
        form=SubscriptionForm.of(subscription),
        log=log,
        attempts=attempts,
        bodies=bodies,
        status=status,
        statuses=list(DeliveryStatus),
        now=datetime.now(UTC),
    )


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
    await state.subscriptions.rotate_secret(db, actor, subscription_id)
    return redirect(
        request,
        f"{OVERVIEW}/{subscription_id}",
        "Secret rotated. Deliveries carry signatures of both secrets for the next 24 hours.",
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
    since: Annotated[str, Form()],
) -> Response:
    try:
        moment = datetime.fromisoformat(since).replace(tzinfo=UTC)
    except ValueError:
        return redirect(request, f"{OVERVIEW}/{subscription_id}", "Enter a date and time.")
    count = await deliveries.replay_failed(db, actor, state.subscriptions, subscription_id, moment)
    return redirect(
        request, f"{OVERVIEW}/{subscription_id}", f"{count} failed deliveries queued again."
    )


@router.post("/deliveries/{delivery_id}/resend", dependencies=[CsrfChecked])
async def resend(request: Request, db: DbSession, actor: WebActor, delivery_id: str) -> Response:
    try:
        delivery = await deliveries.resend(db, actor, delivery_id)
    except Conflict as exc:
        delivery_row, _, _ = await deliveries.get_delivery(db, actor, delivery_id)
        return redirect(request, f"{OVERVIEW}/{delivery_row.subscription_id}", exc.detail)
    return redirect(request, f"{OVERVIEW}/{delivery.subscription_id}", "Delivery queued again.")
