"""Connection and request limits of the recommendation service (private; see docs/serving.md).

uvicorn closes a keep-alive connection that stays idle after a response (`timeout_keep_alive`),
but it has no deadline for *reading* a request: a connection that sends nothing, or half a
request line, headers or body, stays open for ever (slowloris). `deadline_protocol` adds one: a
request must arrive whole within `request_timeout` seconds of the connection opening (or of
the previous response), else the connection is closed; headers are capped in size (431).
`BodyLimit` caps request bodies (413) before the application parses them.
"""

from __future__ import annotations

import json

MAX_BODY_BYTES = 4 * 2**20  # 100,000 ids of 20 characters fit well
MAX_HEADER_BYTES = 64 * 2**10
REQUEST_TIMEOUT = 10.0  # seconds to send a whole request (line, headers and body)
KEEP_ALIVE_TIMEOUT = 5.0  # seconds an idle keep-alive connection stays open


def error_body(message: str, field: str | None = None) -> bytes:
    return json.dumps({"error": message, "field": field}).encode()


def _reject(transport, status: int, reason: str, message: str) -> None:
    body = error_body(message)
    transport.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
    )
    transport.close()


def protocol_class(request_timeout: float = REQUEST_TIMEOUT,
                   max_header_bytes: int = MAX_HEADER_BYTES):
    """uvicorn's HTTP protocol (httptools when installed, else h11) with a request deadline.

    Args:
        request_timeout: seconds a client has to send a whole request, from the connection's
            opening or the end of the previous response.
        max_header_bytes: most bytes of request line and headers (httptools; h11 has its own
            `h11_max_incomplete_event_size`, set to the same value by `serve`).
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools not installed: uvicorn's pure-Python h11
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class DeadlineProtocol(base):
        _deadline = None
        _header_bytes = 0
        _in_headers = False

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            cycle = self.cycle
            if cycle is not None and not cycle.more_body and not cycle.response_complete:
                return  # the whole request arrived: it is being answered
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request has request_timeout from now

        # httptools only: count the bytes of request line and headers.
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            self._header_bytes = self._header_bytes + len(data) if self._in_headers else len(data)
            super().data_received(data)
            if (self._in_headers and self._header_bytes > max_header_bytes
                    and not self.transport.is_closing()):
                _reject(self.transport, 431, "Request Header Fields Too Large",
                        f"request line and headers exceed {max_header_bytes} bytes")

    return DeadlineProtocol


class BodyLimit:
    """ASGI middleware: bodies over `max_bytes` get 413 `{"error", "field": null}`, unread."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send) -> None:
        body = error_body(f"request body larger than {self.max_bytes} bytes")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._too_large(send)
                    return
        body = bytearray()
        while True:  # chunked bodies have no length: count what arrives
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
