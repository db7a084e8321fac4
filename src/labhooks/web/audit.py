"""The audit log page: organisation administrators read their organisation's entries, server
administrators every entry (or one organisation's), newest first, a page at a time, narrowed
with a plain GET form. Read-only, as the log is."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.errors import InvalidInput
from labhooks.services import audit, organizations
from labhooks.services.audit import AuditFilter
from labhooks.services.pages import every_item
from labhooks.web.auth import WebActor
from labhooks.web.paging import listing
from labhooks.web.rendering import render, templates

router = APIRouter(include_in_schema=False)
AUDIT = "/audit"
MAX_FILTER = 100  # characters, as the API's filters


def as_text(value: Any) -> str:
    """A before or after value as a person reads it: text as it is, nothing as a dash, lists
    and numbers as JSON."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


templates.env.filters["audit_value"] = as_text


def _filters(request: Request, server_admin: bool) -> AuditFilter:
    query = request.query_params
    action = query.get("action", "").strip()
    organization_id = query.get("organization_id", "").strip() if server_admin else ""
    for name, value in (("action", action), ("organization_id", organization_id)):
        if len(value) > MAX_FILTER:
            raise InvalidInput.single(name, f"must be at most {MAX_FILTER} characters")
    return AuditFilter(organization_id=organization_id or None, action=action or None)


@router.get(AUDIT)
async def audit_log(request: Request, db: DbSession, actor: WebActor) -> Response:
    if not actor.is_server_admin:
        actor.require_org_admin()  # members are refused before anything is read
    narrow = _filters(request, actor.is_server_admin)
    found = await listing(
        request, AUDIT, "before", partial(audit.list_entries, db, actor, narrow=narrow)
    )
    known = (
        await every_item(partial(organizations.list_organizations, db, actor))
        if actor.is_server_admin
        else []
    )
    return render(
        request,
        "audit.html",
        actor,
        title="Audit log",
        entries=found.items,
        links=found.links,
        filters=narrow,
        organizations={o.id: o.name for o in known},
        hidden=audit.HIDDEN,
    )
