"""The registered-URL rules (SPEC §2.2), as pure functions: examples, then properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labhooks.domain.targets import InvalidTargetURL, matches, parse_target_url


def allowed(registered: str, target: str) -> bool:
    return matches(parse_target_url(registered), parse_target_url(target))


@pytest.mark.parametrize(
    ("registered", "target", "expected"),
    [
        ("https://lims.example.org/hooks", "https://lims.example.org/hooks", True),
        ("https://lims.example.org/hooks", "https://lims.example.org/hooks/x", False),
        ("https://lims.example.org/hooks/", "https://lims.example.org/hooks/x", True),
        ("https://lims.example.org/hooks/", "https://lims.example.org/hooks/a/b?c=1", True),
        ("https://lims.example.org/hooks/", "https://lims.example.org/hooksy", False),
        ("https://lims.example.org/hooks/", "https://lims.example.org/hooks", False),
        ("https://lims.example.org/api", "https://lims.example.org/apiv2", False),
        ("https://lims.example.org/", "http://lims.example.org/x", False),
        ("https://lims.example.org/", "https://lims.example.org:8443/x", False),
        ("https://lims.example.org/", "https://other.example.org/x", False),
        ("https://lims.example.org/", "https://lims.example.org.evil.net/x", False),
        ("https://LIMS.example.org:443/a/", "https://lims.EXAMPLE.org/a/b", True),
        ("https://lims.example.org", "https://lims.example.org/", True),
        ("https://lims.example.org/q?x=1", "https://lims.example.org/q?x=1", True),
        ("https://lims.example.org/q?x=1", "https://lims.example.org/q?x=2", False),
        ("http://[::1]:8080/", "http://[::1]:8080/in", True),
    ],
)
def test_matching(registered: str, target: str, expected: bool) -> None:
    assert allowed(registered, target) is expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "enter a URL"),
        ("ftp://lims.example.org/", "http:// or https://"),
        ("https:///path", "no host"),
        ("https://user:pw@lims.example.org/", "user name or password"),
        ("https://lims.example.org/a#frag", "#fragment"),
        ("https://lims.example.org/a/../admin", "'..'"),
        ("https://lims.example.org/a/%2e%2E/admin", "'..'"),
        ("https://lims.example.org/a%2Fb", "encoded"),
        ("https://lims.example.org/a b", "' '"),
        ("https://lims.example.org:99999/", "not a valid URL"),
        ("https://lims.example.org/" + "a" * 3000, "longer than"),
    ],
)
def test_refused_urls_say_why(raw: str, reason: str) -> None:
    with pytest.raises(InvalidTargetURL, match=None) as caught:
        parse_target_url(raw)
    assert reason in str(caught.value)


segment = st.text(alphabet=string.ascii_lowercase + string.digits + "-_~", min_size=1, max_size=8)
paths = st.lists(segment, min_size=0, max_size=4)
hosts = st.sampled_from(["lims.example.org", "eln.example.com", "10.1.2.3", "localhost"])
schemes = st.sampled_from(["http", "https"])
ports = st.sampled_from([None, 80, 443, 8080])


def build(scheme: str, host: str, port: int | None, parts: list[str], slash: bool) -> str:
    netloc = host if port is None else f"{host}:{port}"
    path = "/" + "/".join(parts) + ("/" if slash and parts else "")
    return f"{scheme}://{netloc}{path}"


@given(schemes, hosts, ports, paths, st.booleans())
def test_every_url_matches_itself_and_survives_canonicalisation(
    scheme: str, host: str, port: int | None, parts: list[str], slash: bool
) -> None:
    url = parse_target_url(build(scheme, host, port, parts, slash))
    assert matches(url, url)
    assert parse_target_url(str(url)) == url


@given(schemes, hosts, ports, paths, paths, schemes, hosts, ports, paths)
def test_a_prefix_admits_exactly_the_urls_below_it_on_the_same_origin(
    scheme: str,
    host: str,
    port: int | None,
    prefix: list[str],
    rest: list[str],
    other_scheme: str,
    other_host: str,
    other_port: int | None,
    other: list[str],
) -> None:
    registered = parse_target_url(build(scheme, host, port, prefix, True))
    target = parse_target_url(build(other_scheme, other_host, other_port, other, False))
    same_origin = (registered.scheme, registered.host, registered.port) == (
        target.scheme,
        target.host,
        target.port,
    )
    below = registered.path == "/" or target.path.split("/")[: len(prefix) + 1] == ["", *prefix]
    assert matches(registered, target) == (
        same_origin and below and target.path != registered.path.rstrip("/")
    )
    # and anything built below the prefix on its origin is admitted
    inside = parse_target_url(build(scheme, host, port, prefix + rest, False))
    assert matches(registered, inside) == (bool(rest) or not prefix)


@given(paths, segment, st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=3))
def test_a_prefix_never_matches_mid_segment(prefix: list[str], last: str, tail: str) -> None:
    registered = parse_target_url(build("https", "lims.example.org", None, [*prefix, last], True))
    sibling = parse_target_url(
        build("https", "lims.example.org", None, [*prefix, last + tail], False)
    )
    assert not matches(registered, sibling)
