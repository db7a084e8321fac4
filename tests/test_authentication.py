"""Logging in cannot be guessed or flooded; what a credential opens ends when the password
changes; a gateway token sees only what it published; waiting publishers are bounded. Several
tests run a server of their own on a fresh database, where the suite's shared server must not
see what they do (their throttle rows, their limits)."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from labhooks.settings import Settings
from tests.api import PASSWORD, Api, Lab, new_lab, problem_fields
from tests.conftest import first_server_admin, settings_for
from tests.delivery_helpers import Wired, query, wire
from tests.live import LiveServer, fresh_database
from tests.receiver import Receiver, Reply
from tests.web_helpers import Html, web_client


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(database_url, tmp_path) as url:
        yield url


def token_for(api: Api, email: str, password: str) -> httpx.Response:
    return api.as_(None).post("/tokens", {"email": email, "password": password})


def test_guessing_an_accounts_password_is_stopped_for_the_api_and_the_form(
    lab: Lab, server: LiveServer
) -> None:
    _, member_id = lab.add_member()
    email = lab.admin.ok("GET", f"/users/{member_id}")["email"]
    for _ in range(5):
        assert token_for(lab.admin, email, "a wrong guess").status_code == 401
    throttled = token_for(lab.admin, email, PASSWORD)  # even the right password waits now
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 60
    assert throttled.json()["code"] == "too_many_requests"
    with httpx.Client(base_url=server.url) as browser:
        form = browser.get("/login").text
        csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
        page = browser.post(
            "/login", data={"csrf_token": csrf, "email": email, "password": PASSWORD}
        )
    assert page.status_code == 429 and "Too many failed attempts" in page.text
    other = lab.add_member()  # another account is not held back
    assert other[0].ok("GET", "/me")["id"] == other[1]


def test_one_client_address_guessing_many_accounts_is_stopped_in_every_process(
    fresh_url: str, tmp_path: Path
) -> None:
    """Two servers on one database: failures counted by one hold at the other."""
    settings = settings_for(fresh_url, tmp_path, login_failures_per_address=3)
    with (
        LiveServer(settings, with_worker=False) as first,
        LiveServer(settings, with_worker=False) as second,
        first_server_admin(first) as root,
    ):
        lab = new_lab(root)
        for guess in range(3):
            wrong = token_for(lab.admin, f"someone-{guess}@{lab.name}.example", "guess")
            assert wrong.status_code == 401
        elsewhere = Api.connect(second.url)
        try:
            blocked = token_for(elsewhere, f"admin@{lab.name}.example", PASSWORD)
        finally:
            elsewhere.http.close()
        assert blocked.status_code == 429 and "Retry-After" in blocked.headers


def test_an_administrator_sets_another_users_password_without_knowing_the_old_one(
    lab: Lab,
) -> None:
    member, member_id = lab.add_member()
    email = member.ok("GET", "/me")["email"]
    lab.admin.ok("PATCH", f"/users/{member_id}", {"password": "set by the admin"})
    assert token_for(lab.admin, email, "set by the admin").status_code == 201


def test_a_new_password_ends_the_old_tokens_and_web_sessions(lab: Lab, server: LiveServer) -> None:
    member, member_id = lab.add_member()
    email = member.ok("GET", "/me")["email"]
    with web_client(server.url, email) as browser:
        assert browser.get("/webhook-subscriptions").status_code == 200
        new = {"password": "a brand new password", "current_password": PASSWORD}
        member.ok("PATCH", f"/users/{member_id}", new)
        assert member.get("/me").status_code == 401  # the token it changed it with, too
        after = browser.get("/webhook-subscriptions")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
    assert token_for(lab.admin, email, "a brand new password").status_code == 201


def test_a_gateway_token_reads_only_its_own_events_and_only_the_answers(
    wired: Wired, lab: Lab
) -> None:
    path = wired.path()
    wired.subscribe(wired.receiver.script(path, Reply(status=500, body=b"LIMS down")))
    gateway = lab.admin.as_(
        lab.admin.as_(None).ok(
            "POST",
            "/tokens",
            {"email": f"admin@{lab.name}.example", "password": PASSWORD, "scope": "publish"},
            201,
        )["token"]
    )
    mine = wired.publish(wired.event(), api=gateway, wait=5)["event_ids"][0]
    theirs = wired.publish(wired.event())["event_ids"][0]
    seen = gateway.ok("GET", f"/events/{mine}")
    assert seen["deliveries"] == []  # no other subscriptions' states, errors or targets
    [answer] = seen["answers"]
    assert answer["response_status"] == 500 and answer["response_body"] == "LIMS down"
    assert answer["error"] is None
    assert gateway.get(f"/events/{theirs}").status_code == 404
    admin_view = lab.admin.ok("GET", f"/events/{mine}")
    assert len(admin_view["deliveries"]) == 1 and len(admin_view["answers"]) == 1


def test_waiting_publishers_are_bounded_and_one_past_the_bound_stores_nothing(
    fresh_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = settings_for(fresh_url, tmp_path, max_waiting_publishers=1)
    held = threading.Event()
    with LiveServer(settings) as server, first_server_admin(server) as root:
        wired = wire(new_lab(root), receiver)
        path = wired.path()
        wired.subscribe(wired.receiver.script(path, Reply(gate=held)))
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(wired.publish, wired.event(1), wait=10)
            wired.receiver.wait_for(path, 1)  # the first publisher is waiting for its answer
            try:
                refused = wired.admin.post("/events", wired.event(2), params={"wait": 5})
            finally:
                held.set()
            assert waiting.result()["answers"][0]["response_status"] == 200
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        [(stored,)] = query(
            fresh_url, "SELECT count(*) FROM events WHERE device_id = :d", d=wired.device["id"]
        )
        assert stored == 1
        assert wired.publish(wired.event(3), wait=5)["answers"][0]["timed_out"] is False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sqlite_files_are_readable_by_their_owner_only(
    settings: Settings, server: LiveServer
) -> None:
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    files = [database, *database.parent.glob(database.name + "-*")]
    assert len(files) >= 2  # the database and its write-ahead log
    for file in files:
        mode = stat.S_IMODE(os.stat(file).st_mode)
        assert mode & 0o077 == 0, f"{file.name} is {oct(mode)}"


def test_bad_credentials_say_nothing_of_which_part_was_wrong(lab: Lab) -> None:
    unknown = token_for(lab.admin, "nobody@nowhere.example", PASSWORD)
    wrong = token_for(lab.admin, f"admin@{lab.name}.example", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]
    assert problem_fields(unknown) == problem_fields(wrong) == {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_secrets_are_nowhere_in_the_database_files_in_plain_text(
    wired: Wired, settings: Settings
) -> None:
    header_value = "lims-api-key-7f3a9c"
    body = {
        "target_url": wired.receiver.url("/secrets"),
        "headers": [{"key": "X-Api-Key", "value": header_value}],
        "channels": [{"channel_id": wired.channel_id, "events": ["data_point.created"]}],
    }
    subscription = wired.admin.ok("POST", "/webhook-subscriptions", body, 201)
    signing = wired.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    wired.publish(wired.event())
    wired.settle(subscription["id"], "succeeded")  # the attempt, with its masked headers, is in
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    files = sorted(str(f) for f in database.parent.glob(database.name + "*"))
    # read by another process: closing a file of the database in this one would drop every
    # POSIX lock this process's SQLite connections hold on it, and the next labhooks process to
    # close the database would take itself for the last and delete the WAL under them
    stored = subprocess.run(["cat", *files], capture_output=True, check=True).stdout
    assert header_value.encode() not in stored
    assert signing.encode() not in stored
    assert signing.removeprefix("whsec_").encode() not in stored


def test_a_burst_of_guesses_at_once_is_counted_whole(lab: Lab) -> None:
    """Attempts are counted before they are judged: of twelve sent at once, five are tried,
    seven are refused without trying, and then even the right password waits."""
    _, member_id = lab.add_member()
    email = lab.admin.ok("GET", f"/users/{member_id}")["email"]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda n: token_for(lab.admin, email, f"guess {n}"), range(12)))
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 7
    assert token_for(lab.admin, email, PASSWORD).status_code == 429


def test_a_gateway_token_stops_publishing_when_its_issuer_is_no_longer_an_administrator(
    wired: Wired, lab: Lab
) -> None:
    second, second_id = lab.add_member("admin")
    second_email = second.ok("GET", "/me")["email"]
    gateway_token = lab.admin.as_(None).ok(
        "POST", "/tokens", {"email": second_email, "password": PASSWORD, "scope": "publish"}, 201
    )["token"]
    gateway = lab.admin.as_(gateway_token)
    assert gateway.post("/events", wired.event()).status_code == 202
    lab.admin.ok("PATCH", f"/users/{second_id}", {"role": "member"})
    assert gateway.post("/events", wired.event()).status_code == 403


def test_logging_out_ends_the_session_even_for_a_copy_of_its_cookie(
    lab: Lab, server: LiveServer
) -> None:
    member, _ = lab.add_member()
    email = member.ok("GET", "/me")["email"]
    with web_client(server.url, email) as browser:
        copied = browser.cookies["labhooks_session"]
        page = Html(browser.get("/webhook-subscriptions").text)
        assert browser.post("/logout", data={"csrf_token": page.csrf()}).status_code == 303
    with httpx.Client(base_url=server.url, cookies={"labhooks_session": copied}) as replay:
        again = replay.get("/webhook-subscriptions")
    assert again.status_code == 303 and again.headers["location"].startswith("/login")


def test_x_forwarded_for_is_believed_only_from_the_proxies_named(
    fresh_url: str, tmp_path: Path
) -> None:
    """Without LABHOOKS_TRUSTED_PROXIES a client cannot choose the address its guesses count
    against by sending X-Forwarded-For."""
    settings = settings_for(fresh_url, tmp_path, login_failures_per_address=3)
    with LiveServer(settings, with_worker=False) as server, first_server_admin(server) as root:
        lab = new_lab(root)
        for guess in range(3):
            spoofed = {"X-Forwarded-For": f"198.51.100.{guess}"}
            wrong = lab.admin.as_(None).post(
                "/tokens",
                {"email": f"someone-{guess}@{lab.name}.example", "password": "guess"},
                headers=spoofed,
            )
            assert wrong.status_code == 401
        assert token_for(lab.admin, f"admin@{lab.name}.example", PASSWORD).status_code == 429
