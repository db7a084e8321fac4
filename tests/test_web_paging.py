"""Every web list reaches every item: 250 of each kind, past any page size, found by following
the pages' "Next page" links (rel="next") or offered whole in the choice lists.

Lists are read as a browser without JavaScript reads them (httpx, logged in through the login
form); the channel dialog's "Show more" is htmx, so it is clicked in Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.api import PASSWORD, Api, Lab, new_lab, unique
from tests.conftest import SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD
from tests.delivery_helpers import Wired, wire
from tests.live import LiveServer
from tests.receiver import Receiver
from tests.web_helpers import Html, chromium, log_in, web_client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MANY = 250  # past the old limit of 200, and past several pages of any size
ID = r"[a-z]{3}_[0-9a-f]{32}"


@dataclass
class Crowded:
    """One organisation with MANY of everything its pages list."""

    wired: Wired
    admin_email: str
    subscriptions: set[str]
    urls: set[str]
    devices: set[str]  # names
    channels: set[str]
    members: set[str]  # ids
    emails: set[str]
    grants: set[str]
    organizations: set[str]
    log_subscription: str
    deliveries: list[str]  # newest first

    @property
    def lab(self) -> Lab:
        return self.wired.lab


def _many(make: Callable[[int], str], workers: int = 1) -> list[str]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(make, range(MANY)))


@pytest.fixture(scope="module")
def crowded(server: LiveServer, server_admin: Api, receiver: Receiver) -> Crowded:
    lab = new_lab(server_admin)
    wired = wire(lab, receiver)
    urls = _many(lambda i: lab.register(f"https://lims-{i:03d}.example.org/hooks/")["url"])
    made = [
        lab.add_device(
            f"Paged device {i:03d}",
            [{"key": "temp", "name": "Temperature", "trigger_events": ["data_point.created"]}],
        )
        for i in range(MANY)
    ]
    channels = [d["channels"][0]["id"] for d in made]
    quiet = [{"channel_id": channels[0], "events": ["data_point.created"]}]  # never published
    subscriptions = _many(
        lambda i: wired.subscribe(receiver.url(f"/crowd/{i}"), channels=quiet)["id"]
    )

    def member(i: int) -> str:
        # its own client: users are slow to create (password hashing), so two at a time
        with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as http:
            body = {"email": f"m{i:03d}-{lab.name}@lab.example", "name": f"Member {i:03d}"}
            user = Api(http, lab.admin.token).ok(
                "POST", "/users", body | {"password": PASSWORD}, 201
            )
        return str(user["id"])

    members = _many(member, workers=2)
    grants = [lab.grant(members[i], channels[i])["id"] for i in range(MANY)]
    organizations = _many(
        lambda _: server_admin.ok("POST", "/organizations", {"name": unique("Paged org")}, 201)[
            "id"
        ]
    )
    log = wired.subscribe(receiver.url("/crowd/log"))
    wired.publish(*[wired.event(float(i)) for i in range(MANY)])
    delivered = wired.settle(log["id"], "succeeded", count=MANY, timeout=120)
    return Crowded(
        wired=wired,
        admin_email=f"admin@{lab.name}.example",
        subscriptions={*subscriptions, log["id"]},
        urls=set(urls),
        devices={d["name"] for d in made},
        channels=set(channels),
        members=set(members),
        emails={f"m{i:03d}-{lab.name}@lab.example" for i in range(MANY)},
        grants=set(grants),
        organizations=set(organizations),
        log_subscription=log["id"],
        deliveries=sorted((d["id"] for d in delivered), reverse=True),
    )


@pytest.fixture
def admin_web(server: LiveServer, crowded: Crowded) -> Iterator[httpx.Client]:
    with web_client(server.url, crowded.admin_email) as client:
        yield client


def walk(
    client: httpx.Client, url: str, collect: Callable[[Html], list[str]], within: str | None = None
) -> list[str]:
    """Everything `collect` finds on the first page and every page its "Next page" leads to."""
    found: list[str] = []
    for number in range(1, 100):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        page = Html(response.text)
        found += collect(page)
        if number > 1:
            assert page.first_page_link(within), f"page {number} of {url} has no First page link"
        if (next_url := page.link("next", within)) is None:
            return found
        url = next_url
    raise AssertionError(f"{url}: more than 100 pages")


def ids(pattern: str) -> Callable[[Html], list[str]]:
    """Collects the ids in the hrefs and form actions (their paths) that match `pattern`."""
    compiled = re.compile(pattern)

    def collect(page: Html) -> list[str]:
        found = []
        for element in page.elements:
            for name in ("href", "action"):
                path = element.attrs.get(name, "").partition("?")[0]
                if match := compiled.fullmatch(path):
                    found.append(match.group(1))
        return list(dict.fromkeys(found))

    return collect


def texts(tag: str, within: str) -> Callable[[Html], list[str]]:
    return lambda page: [e.text.strip() for e in page.find(tag, within)]


def unreached(expected: set[str], found: list[str]) -> str:
    missing = expected - set(found)
    return f"{len(missing)} of {len(expected)} not reachable, e.g. {sorted(missing)[:3]}"


def test_the_overview_pages_through_every_subscription(
    admin_web: httpx.Client, crowded: Crowded
) -> None:
    found = walk(admin_web, "/webhook-subscriptions", ids(rf"/webhook-subscriptions/({ID})"))
    assert set(found) == crowded.subscriptions, unreached(crowded.subscriptions, found)
    assert len(found) == len(set(found))  # no subscription on two pages


def test_the_delivery_log_pages_through_every_delivery_newest_first(
    admin_web: httpx.Client, crowded: Crowded
) -> None:
    log = f"/webhook-subscriptions/{crowded.log_subscription}"
    for url in (log, f"{log}?status=succeeded"):  # the filter is kept from page to page
        found = walk(admin_web, url, ids(rf"/deliveries/({ID})/resend"))
        assert set(found) == set(crowded.deliveries), unreached(set(crowded.deliveries), found)
        assert found == crowded.deliveries


def test_server_administration_pages_through_every_organisation_and_offers_each(
    server: LiveServer, crowded: Crowded
) -> None:
    with web_client(server.url, SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD) as client:
        found = walk(client, "/admin", ids(rf"/admin/organizations/({ID})/webhooks"))
        assert crowded.organizations <= set(found), unreached(crowded.organizations, found)
        offered = {value for value, _ in Html(client.get("/admin").text).options("user-org")}
    assert crowded.organizations <= offered, unreached(crowded.organizations, list(offered))


@pytest.mark.parametrize(
    ("section", "collect", "expected"),
    [
        ("target-urls", texts("code", "target-urls"), "urls"),
        ("users", texts("td", "users"), "emails"),
        ("channel-access", ids(rf"/organization/channel-grants/({ID})/delete"), "grants"),
        ("devices", texts("strong", "devices"), "devices"),
    ],
    ids=["target-urls", "users", "channel-access", "devices"],
)
def test_each_list_of_the_organisation_page_pages_on_its_own(
    admin_web: httpx.Client,
    crowded: Crowded,
    section: str,
    collect: Callable[[Html], list[str]],
    expected: str,
) -> None:
    # another list stands on its second page, and stays there while this one is paged
    other = "devices" if section != "devices" else "users"
    second = Html(admin_web.get("/organization").text).link("next", other)
    assert second, f"the {other} list has no Next page link"
    kept = Html(admin_web.get(second).text).text_of(other)
    seen_other: set[str] = set()

    def collect_and_check(page: Html) -> list[str]:
        seen_other.add(page.text_of(other))
        return collect(page)

    found = walk(admin_web, second, collect_and_check, within=section)
    wanted: set[str] = getattr(crowded, expected)
    assert wanted <= set(found), unreached(wanted, found)
    assert seen_other == {kept}, f"paging {section} moved the {other} list"


def test_the_grant_form_offers_every_member_and_every_channel(
    admin_web: httpx.Client, crowded: Crowded
) -> None:
    page = Html(admin_web.get("/organization").text)
    users = {value for value, _ in page.options("grant-user")}
    channels = {value for value, _ in page.options("grant-channel")}
    assert crowded.members <= users, unreached(crowded.members, list(users))
    assert crowded.channels <= channels, unreached(crowded.channels, list(channels))


def test_the_subscription_form_suggests_every_registered_url_and_keeps_its_hint_short(
    admin_web: httpx.Client, crowded: Crowded
) -> None:
    page = Html(admin_web.get("/webhook-subscriptions/new").text)
    suggested = {value for value, _ in page.options("registered-urls")}
    assert crowded.urls <= suggested, unreached(crowded.urls, list(suggested))
    hint = page.text_of("target_url-hint")
    assert len(page.find("code", "target_url-hint")) <= 5
    assert re.search(rf"and {MANY + 1 - 5} more", hint), hint  # the receiver's prefix too


def test_a_cursor_that_is_not_one_answers_a_page_not_a_server_error(
    admin_web: httpx.Client,
) -> None:
    response = admin_web.get("/webhook-subscriptions", params={"after": "garbage"})
    assert response.status_code == 422
    assert "names no page of this list" in response.text and "<html" in response.text


def test_what_is_added_to_a_long_list_is_shown_on_the_page_it_lands_on(
    server: LiveServer, admin_web: httpx.Client, crowded: Crowded
) -> None:
    csrf = Html(admin_web.get("/organization").text).csrf()
    device = {"name": "Newest device", "channel_key": "k", "channel_name": "K", "csrf_token": csrf}
    landed = admin_web.post("/organization/devices", data=device, follow_redirects=True)
    assert "devices_after=" in str(landed.url)
    assert "Newest device" in texts("strong", "devices")(Html(landed.text))
    with web_client(server.url, SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD) as client:
        csrf = Html(client.get("/admin").text).csrf()
        name = unique("Newest org")
        landed = client.post("/admin/organizations", data={"name": name, "csrf_token": csrf})
        page = Html(client.get(landed.headers["location"]).text)
    assert any(e.text == name for e in page.find("td", "organizations"))


def test_a_device_split_across_pages_of_the_dialog_says_it_continues(
    admin_web: httpx.Client, crowded: Crowded
) -> None:
    channels = [
        {"key": f"c{i}", "name": f"Channel {i}", "trigger_events": ["data_point.created"]}
        for i in range(60)
    ]
    crowded.lab.add_device("Split device", channels)
    search = "/webhook-subscriptions/channel-search"
    first = Html(admin_web.get(search, params={"device_q": "split"}).text)
    [more] = first.find("button", **{"class": "secondary show-more"})
    rest = Html(admin_web.get(more.attrs["hx-get"]).text)
    [heading] = rest.find("h3")
    assert " ".join(heading.text.split()) == "Split device (continued)"
    shown = len(first.find("fieldset")) + len(rest.find("fieldset"))
    assert shown == 60 and not rest.find("button")


# -- the Selected Channels dialog, in Chromium --------------------------------------------------


@pytest.fixture(scope="module")
def browser(crowded: Crowded) -> Iterator[Browser]:
    yield from chromium()


def test_the_channel_dialog_shows_more_results_and_keeps_ticks(
    browser: Browser, server: LiveServer, crowded: Crowded, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    log_in(page, server.url, crowded.admin_email)
    page.goto(f"{server.url}/webhook-subscriptions/new")
    page.get_by_label("Target URL").fill(crowded.wired.receiver.url("/crowd/picked"))
    page.get_by_role("button", name="Selected Channels").click()
    page.get_by_label("Device name").fill("Paged device")
    results = page.locator("#channel-results")
    first = results.locator("section", has_text="Paged device 000")
    expect(first).to_have_count(1)
    first.get_by_label("data_point.created").check()
    more = results.get_by_role("button", name="Show more")
    headings = results.locator("h3")
    for _ in range(20):
        if not more.count():
            break
        shown = headings.count()
        more.click()
        expect(headings).not_to_have_count(shown)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=tmp_path / "dialog-show-more-phone.png")
    expect(results.locator("h3", has_text="Paged device")).to_have_count(MANY)
    expect(first.get_by_label("data_point.created")).to_be_checked()
    last = results.locator("section", has_text=f"Paged device {MANY - 1:03d}")
    last.get_by_label("data_point.created").check()
    page.get_by_role("button", name="CONFIRM").click()
    summary = page.locator("#selection-summary")
    expect(summary).to_contain_text("Paged device 000 · Temperature: data_point.created")
    expect(summary).to_contain_text(f"Paged device {MANY - 1:03d} · Temperature")
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription added.")
    context.close()
    [made] = [
        s
        for s in walk_api(crowded.lab.admin, "/webhook-subscriptions")
        if str(s["target_url"]).endswith("/crowd/picked")
    ]
    assert {c["device_name"] for c in made["channels"]} == {
        "Paged device 000",
        f"Paged device {MANY - 1:03d}",
    }


def walk_api(api: Api, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.ok("GET", f"{path}?limit=200" + (f"&cursor={cursor}" if cursor else ""))
        found += page["items"]
        if not (cursor := page["next_cursor"]):
            return found


def test_paged_pages_stay_readable_at_phone_width(
    browser: Browser, server: LiveServer, crowded: Crowded, tmp_path: Path
) -> None:
    admin = (crowded.admin_email, PASSWORD)
    pages = [
        (admin, "overview", "/webhook-subscriptions"),
        (admin, "organisation", "/organization"),
        (admin, "log", f"/webhook-subscriptions/{crowded.log_subscription}"),
        ((SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD), "admin", "/admin"),
    ]
    for (email, password), name, path in pages:
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        page.set_default_timeout(10_000)
        log_in(page, server.url, email, password)
        page.goto(f"{server.url}{path}")
        page.get_by_role("link", name=re.compile("^Next page")).first.click()
        expect(page.get_by_role("link", name=re.compile("^First page")).first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        page.screenshot(path=tmp_path / f"{name}-page-2-phone.png")
        page.locator("nav.pager").first.scroll_into_view_if_needed()
        page.screenshot(path=tmp_path / f"{name}-page-2-pager-phone.png")
        if name == "overview":
            page.goto(f"{server.url}/webhook-subscriptions/new")  # the hint under Target URL
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, "form"
            page.screenshot(path=tmp_path / "form-phone.png")
        context.close()
