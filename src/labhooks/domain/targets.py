"""Target URLs: parsing to one canonical form, and matching against the registered allow-list.

A registered URL is either exact, or a prefix when its path ends in `/`. Scheme, host and port
always compare exactly; a prefix matches whole path segments only, so `https://lims/api/` admits
`https://lims/api/samples` but never `https://lims/apiv2`. Paths that a server could resolve
outside the prefix (dot segments, encoded slashes or backslashes) are refused outright.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_ESCAPES = ("%2f", "%5c")  # an encoded / or \ lets a path leave its prefix
_ALLOWED_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


class InvalidTargetURL(ValueError):
    """The text is not a URL labhooks will deliver to; the message says why."""


@dataclass(frozen=True)
class TargetURL:
    scheme: str
    host: str
    port: int
    path: str
    query: str

    @property
    def is_prefix(self) -> bool:
        return self.path.endswith("/") and not self.query

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{host}{port}{self.path}{query}"


def parse_target_url(raw: str) -> TargetURL:
    """Parse and canonicalise `raw`, or raise InvalidTargetURL saying what is wrong."""
    text = raw.strip()
    if not text:
        raise InvalidTargetURL("enter a URL such as https://lims.example.org/webhooks")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidTargetURL(f"is longer than {MAX_URL_LENGTH} characters")
    bad = sorted({c for c in text if c not in _ALLOWED_URL_CHARS})
    if bad:
        raise InvalidTargetURL(
            f"contains {', '.join(repr(c) for c in bad)}; percent-encode such characters"
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidTargetURL(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidTargetURL("must start with http:// or https://")
    if not parts.hostname:
        raise InvalidTargetURL("has no host name")
    if port == 0:
        raise InvalidTargetURL("has port 0, where no server listens; give the target's port")
    _check_host(parts.hostname.lower())
    if parts.username is not None or parts.password is not None:
        raise InvalidTargetURL("must not carry a user name or password; use a header instead")
    if parts.fragment or text.endswith("#"):
        raise InvalidTargetURL("must not have a #fragment; servers never receive it")
    path = parts.path or "/"
    _check_path(path)
    return TargetURL(
        scheme=scheme,
        host=parts.hostname.lower(),
        port=port if port is not None else DEFAULT_PORTS[scheme],
        path=path,
        query=parts.query,
    )


def _check_host(host: str) -> None:
    """A host of numbers only must be an IPv4 address written as four decimal numbers, without
    a trailing dot: the shorthands (`2130706433`, `127.1`, `0x7f.1`, `010.0.0.1`, `127.1.`) are
    read differently by different programs, so what was registered is not plainly what would
    be reached."""
    bare = host.removesuffix(".")
    if ":" in host or not all(_NUMERIC_LABEL.fullmatch(label) for label in bare.split(".")):
        return
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise InvalidTargetURL(
            f"host {host} is a shorthand IPv4 address; write it as four decimal numbers "
            "without leading zeros or a trailing dot, e.g. 192.0.2.10"
        ) from None


def _check_path(path: str) -> None:
    """Refuses what a server could resolve outside a registered prefix, also once decoded a
    second time (`%252e%252e`) and with a segment's `;parameters` dropped (`..;`, as Tomcat and
    Spring read it)."""
    once = unquote(path)
    for form in (path.lower(), once.lower()):
        if any(escape in form for escape in _FORBIDDEN_ESCAPES):
            raise InvalidTargetURL("must not contain an encoded '/' or '\\' (%2F, %5C) in its path")
    for segment in once.split("/"):
        if unquote(segment).split(";")[0] in (".", ".."):
            raise InvalidTargetURL("must not contain '.' or '..' path segments")


def matches(registered: TargetURL, target: TargetURL) -> bool:
    """Whether `target` is allowed by the one `registered` URL."""
    same_origin = (registered.scheme, registered.host, registered.port) == (
        target.scheme,
        target.host,
        target.port,
    )
    if not same_origin:
        return False
    if registered == target:
        return True
    return registered.is_prefix and target.path.startswith(registered.path)


def first_match(registered: Iterable[TargetURL], target: TargetURL) -> TargetURL | None:
    return next((r for r in registered if matches(r, target)), None)
