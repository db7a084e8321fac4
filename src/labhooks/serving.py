"""How labhooks is served: uvicorn, with what it must be told.

- `BoundedHeadersProtocol`: uvicorn's httptools protocol reads a request's whole header block
  before the application sees any of it, so a 300 MiB header costs 300 MiB before the 431 of
  api.limits. This one counts the bytes of each request's head as they arrive and answers 431
  itself past HEAD_BYTES_LIMIT, closing the connection.
- Proxy headers: uvicorn believes `X-Forwarded-For` from 127.0.0.1 by default, which lets any
  local client choose the address the login limits count. labhooks believes it only from the
  proxies LABHOOKS_TRUSTED_PROXIES names.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from labhooks.api.limits import MAX_HEADERS_BYTES
from labhooks.settings import Settings

# The header block the application may see (api.limits), with room for a long request line.
HEAD_BYTES_LIMIT = MAX_HEADERS_BYTES + 32 * 1024


class BoundedHeadersProtocol(HttpToolsProtocol):
    _in_head = True
    _head_bytes = 0
    _completed = 0  # messages completed on this connection

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._completed += 1
        self._in_head, self._head_bytes = True, 0  # what comes next is the next request's head

    def data_received(self, data: bytes) -> None:
        # Counted after parsing: a read holding the head and the start of a body (one read may
        # be 256 KiB) must count only when the head is still unfinished at its end. A read in
        # which a pipelined request ended is not counted (where the next head began in it is
        # unknown), so the bound is HEAD_BYTES_LIMIT plus at most two reads, never a false 431.
        completed = self._completed
        super().data_received(data)
        if self._in_head and completed == self._completed and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_BYTES_LIMIT:
                self._refuse()

    def _refuse(self) -> None:
        detail = f"The request's head is larger than {HEAD_BYTES_LIMIT} bytes."
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": detail,
                "code": "request_headers_too_large",
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"x-content-type-options: nosniff\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What uvicorn.run / uvicorn.Config need besides the app, host and port."""
    trusted = settings.trusted_proxies.strip()
    return {
        "http": BoundedHeadersProtocol,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "server_header": False,  # no version for a scanner to match
    }
