"""What every request handler, API or web page, may ask for: the state made once at start-up
and a database session. The caller (a bearer token for the API, the session cookie for pages)
is resolved by each side's own dependency on top of these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.network import AddressPolicy
from labhooks.security import Passwords, SecretBox
from labhooks.services.events import Waiters
from labhooks.services.subscriptions import SubscriptionService
from labhooks.services.tokens import LoginLimits
from labhooks.settings import Settings
from labhooks.signals import Signal
from labhooks.storage.database import Database


@dataclass
class AppState:
    """Everything made once at start-up and shared by all requests."""

    settings: Settings
    database: Database
    box: SecretBox
    policy: AddressPolicy  # where deliveries may go: to warn of targets they may not reach
    passwords: Passwords
    login_limits: LoginLimits
    subscriptions: SubscriptionService
    recorded: Signal  # attempts were recorded (by this process's worker, or another's)
    waiters: Waiters


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.labhooks
    return state


async def _state(request: Request) -> AppState:
    # async, though it awaits nothing: FastAPI runs a plain function in a thread pool, a
    # thread hop on every request for an attribute read
    return app_state(request)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with app_state(request).database.session() as session:
        yield session


State = Annotated[AppState, Depends(_state)]
DbSession = Annotated[AsyncSession, Depends(_session)]
