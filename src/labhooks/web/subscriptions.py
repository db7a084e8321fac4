"""The seed's screens: the Webhook Subscriptions overview, and the add/edit form with its
channel dialog."""

from __future__ import annotations

from contextlib import suppress
from functools import partial
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from labhooks.dependencies import DbSession, State
from labhooks.domain.catalogue import EVENT_TYPES, ORGANIZATION_EVENT_TYPES
from labhooks.domain.errors import Conflict, InvalidInput, NotFound
from labhooks.domain.people import Actor
from labhooks.services import deliveries
from labhooks.services.devices import list_accessible_channels
from labhooks.services.notices import notices_for
from labhooks.services.organizations import load_organization
from labhooks.services.pages import PageRequest, every_item
from labhooks.services.subscriptions import SubscriptionCreate, SubscriptionUpdate
from labhooks.services.target_urls import delivery_warning, list_target_urls
from labhooks.services.users import load_user
from labhooks.storage.models import Channel, Device, User, WebhookSubscription
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import SCHEMES, HeaderRow, SubscriptionForm
from labhooks.web.paging import PAGE_SIZE, back, listing, showing
from labhooks.web.rendering import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)
OVERVIEW = "/webhook-subscriptions"
HINTED_URLS = 5  # the hint under Target URL names this many; the field suggests every one
DESCRIPTIONS = {name: event.description for name, event in EVENT_TYPES.items()}


@router.get("/")
async def home(actor: WebActor) -> Response:
    return RedirectResponse("/admin" if actor.organization_id is None else OVERVIEW)


@router.get(OVERVIEW)
async def overview(request: Request, state: State, db: DbSession, actor: WebActor) -> Response:
    if actor.organization_id is None:
        return redirect(request, "/admin")
    organization = await load_organization(db, actor.organization_id)
    page = await listing(
        request, OVERVIEW, "after", partial(state.subscriptions.list_for, db, actor)
    )
    latest = await deliveries.latest_by_subscription(db, [s.id for s in page.items])
    return render(
        request,
        "overview.html",
        actor,
        title="Webhook Subscriptions",
        organization=organization,
        subscriptions=page,
        latest=latest,
        owners=await _owners(db, actor, page.items),
        notices=await notices_for(db, actor),
    )


async def _owners(
    db: DbSession, actor: Actor, subscriptions: list[WebhookSubscription]
) -> dict[str, User]:
    """Who owns each subscription, for administrators, who see everyone's (a member sees only
    their own). At most a page of distinct users, each loaded once."""
    owners: dict[str, User] = {}
    if not actor.is_org_admin:
        return owners
    for owner_id in {s.owner_id for s in subscriptions if s.owner_id}:
        with suppress(NotFound):  # removed meanwhile: the row says nobody
            owners[owner_id] = await load_user(db, actor, owner_id)
    return owners


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
        return redirect(request, back(request, OVERVIEW), problem)
    latest = await deliveries.latest_by_subscription(db, [subscription_id])
    return render(
        request,
        "_subscription_row.html",
        actor,
        subscription=subscription,
        latest=latest,
        owners=await _owners(db, actor, [subscription]),
        problem=problem,
    )


@router.post(f"{OVERVIEW}/{{subscription_id}}/delete", dependencies=[CsrfChecked])
async def delete(
    request: Request, state: State, db: DbSession, actor: WebActor, subscription_id: str
) -> Response:
    await state.subscriptions.delete(db, actor, subscription_id)
    return redirect(request, back(request, OVERVIEW), "Webhook subscription deleted.")


async def _form_page(
    request: Request,
    db: DbSession,
    actor: WebActor,
    form: SubscriptionForm,
    subscription_id: str | None,
    status_code: int = 200,
) -> Response:
    registered = [u.url for u in await every_item(partial(list_target_urls, db, actor))]
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
        registered=registered,
        hinted=HINTED_URLS,
        schemes=SCHEMES.values(),
        organization_event_types=ORGANIZATION_EVENT_TYPES.values(),
    )


@router.get(f"{OVERVIEW}/new")
async def new(request: Request, db: DbSession, actor: WebActor) -> Response:
    return await _form_page(request, db, actor, SubscriptionForm(), None)


@router.post(f"{OVERVIEW}/new", dependencies=[CsrfChecked])
async def create(request: Request, state: State, db: DbSession, actor: WebActor) -> Response:
    form = SubscriptionForm.parse(await request.form(), stored_keys=set())
    try:
        created = await state.subscriptions.create(
            db, actor, form.to_input(SubscriptionCreate, active=True)
        )
    except (InvalidInput, Conflict) as exc:
        return await _refused(request, db, actor, form, None, exc)
    list_page = partial(state.subscriptions.list_for, db, actor)
    target = await showing(request, OVERVIEW, "after", created, list_page)
    warning = await delivery_warning(created.target_url, state.policy)
    return redirect(request, target, "Webhook subscription added.", warning)


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
    form = SubscriptionForm.parse(
        await request.form(), stored_keys=stored, current_scheme=subscription.signature_scheme
    )
    try:
        data = form.to_input(SubscriptionUpdate)
        saved = await state.subscriptions.update(db, actor, subscription_id, data)
    except (InvalidInput, Conflict) as exc:
        return await _refused(request, db, actor, form, subscription_id, exc)
    warning = await delivery_warning(saved.target_url, state.policy)
    return redirect(request, OVERVIEW, "Webhook subscription saved.", warning)


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
    after: str = "",
    continues: str = "",
    selected: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI reads the default)
) -> Response:
    """The dialog's results: channels the user may access on devices matching the name, a page
    at a time; "Show more" asks for the next page after `after` and appends it."""
    query = device_q.strip() or None
    page = await list_accessible_channels(
        db, actor, PageRequest(limit=PAGE_SIZE, cursor=after or None), query
    )
    devices: dict[str, tuple[Device, list[Channel]]] = {}
    for channel in page.items:
        devices.setdefault(channel.device_id, (channel.device, []))[1].append(channel)
    more = None
    if page.next_cursor:
        last = page.items[-1].device_id
        more = f"{OVERVIEW}/channel-search?" + urlencode(
            {"device_q": device_q, "after": page.next_cursor, "continues": last}
        )
    return render(
        request,
        "_channel_results.html",
        actor,
        devices=list(devices.values()),
        descriptions=DESCRIPTIONS,
        selected=set(selected),
        query=device_q,
        appended=bool(after),
        continues=continues,
        more=more,
    )
