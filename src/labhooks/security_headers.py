"""Security headers on every answer of the app: a pure ASGI middleware, so that no route, error
handler or static file can be left without them.

Every answer gets the one strict Content-Security-Policy of the UI, `nosniff`, `DENY` framing
and `same-origin` referrers; HTML also gets `Cache-Control: no-store`, since every page carries
the session's CSRF token; HSTS is sent when the app is served over HTTPS (secure cookies).
FastAPI's API documentation pages get policies of their own, allowing exactly what they load.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Policy = Mapping[str, str]

# The UI: scripts and styles only from /static (no inline code, no eval: htmx's indicator
# <style> and eval are switched off in base.html), forms only to this site, never framed.
UI_POLICY: Policy = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "form-action": "'self'",
    "base-uri": "'none'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
}

_LOCKED: Policy = {"base-uri": "'none'", "object-src": "'none'", "frame-ancestors": "'none'"}

# /docs: Swagger UI's script, stylesheet and favicon from this site (vendored under /static, no
# CDN: lab networks often have no internet); FastAPI's inline initializer, allowed by its hash
# (added per answer); data: images in Swagger UI's stylesheet; /openapi.json and "Try it out".
SWAGGER_UI_POLICY: Policy = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "form-action": "'self'",
    **_LOCKED,
}

# /redoc: ReDoc's bundle from this site; 'unsafe-inline' styles because ReDoc writes its styles
# into <style> elements at run time (styled-components), besides FastAPI's inline <style>; no
# web fonts (the page is made without Google Fonts); its search index runs in a worker made from
# a blob: URL; the spec fetched from this site.
REDOC_POLICY: Policy = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "worker-src": "blob:",
    "form-action": "'none'",
    **_LOCKED,
}

# /docs/oauth2-redirect: nothing but its own inline script, allowed by its hash.
OAUTH2_REDIRECT_POLICY: Policy = {"default-src": "'none'", "script-src": "'none'", **_LOCKED}

# a year, without includeSubDomains: other hosts of the domain are not ours to decide for
HSTS = "max-age=31536000"
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)


def render(policy: Policy) -> str:
    return "; ".join(f"{name} {sources}" for name, sources in policy.items())


def with_inline_scripts(policy: Policy, html: bytes) -> Policy:
    """`policy` with the hashes of the inline scripts in `html` added to its script-src."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
    if not hashes:
        return policy
    listed = policy.get("script-src", "").replace("'none'", "").split()
    return {**policy, "script-src": " ".join([*listed, *hashes])}


class SecurityHeaders:
    """Adds the headers to every HTTP answer, leaving any the answer set itself. Pages under
    `documentation` (path to policy) are read whole first, to hash their inline scripts."""

    def __init__(
        self, app: ASGIApp, hsts: bool, documentation: Mapping[str, Policy] | None = None
    ) -> None:
        self.app = app
        self.hsts = hsts
        self.documentation = dict(documentation or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", "").rstrip("/")) or "/"
        policy = self.documentation.get(path)
        if policy is None:

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self._add(message, UI_POLICY)
                await send(message)

            await self.app(scope, receive, send_with_headers)
            return
        await self._documentation_page(scope, receive, send, policy)

    async def _documentation_page(
        self, scope: Scope, receive: Receive, send: Send, policy: Policy
    ) -> None:
        start: Message | None = None
        body: list[bytes] = []

        async def send_when_whole(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            whole = b"".join(body)
            self._add(start, with_inline_scripts(policy, whole))
            await send(start)
            await send({"type": "http.response.body", "body": whole})

        await self.app(scope, receive, send_when_whole)

    def _add(self, start: Message, policy: Policy) -> None:
        headers = MutableHeaders(scope=start)
        headers.setdefault("Content-Security-Policy", render(policy))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        if headers.get("content-type", "").startswith("text/html"):
            headers.setdefault("Cache-Control", "no-store")
        if self.hsts:
            headers.setdefault("Strict-Transport-Security", HSTS)


def documentation_policies(
    docs_url: str | None, oauth2_redirect_url: str | None, redoc_url: str | None
) -> dict[str, Policy]:
    """The policies of the API documentation pages, by path."""
    return {
        path: policy
        for path, policy in (
            (docs_url, SWAGGER_UI_POLICY),
            (oauth2_redirect_url, OAUTH2_REDIRECT_POLICY),
            (redoc_url, REDOC_POLICY),
        )
        if path
    }
