"""A small websocket client (RFC 6455) for ComfyUI's /ws: open, read text messages, close.

Standard library only. Reads text and binary messages (ComfyUI sends previews as binary: the
caller skips them), answers pings, and sends its own frames masked, as a client must. Every read
has a timeout, so the caller's loop stays bounded; a message larger than `max_message` closes the
connection instead of filling memory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class WebSocketClosed(ConnectionError):
    """The connection ended (closed by the server, reset, or refused during the handshake)."""


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to `key`."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes, mask: bool = True) -> bytes:
    """One final frame; client frames are masked."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, (0x80 if mask else 0) | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, (0x80 if mask else 0) | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, (0x80 if mask else 0) | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WebSocket:
    def __init__(self, sock: socket.socket, max_message: int = 64 << 20):
        self.sock, self.max_message = sock, max_message
        self._buffer = b""
        self._parts: list[bytes] = []
        self._kind = TEXT

    @classmethod
    def connect(cls, url: str, timeout: float = 5.0) -> WebSocket:
        """Open `url` (ws:// or wss://); raise OSError (WebSocketClosed for a refused upgrade)."""
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
        try:
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
            key = base64.b64encode(os.urandom(16)).decode()
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk or len(head) > 65536:
                    raise WebSocketClosed("the server closed the connection during the websocket handshake")
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if len(status) < 2 or status[1] != "101":
                raise WebSocketClosed(f"the server refused the websocket ({lines[0]})")
            if headers.get("sec-websocket-accept") != accept_key(key):
                raise WebSocketClosed("the server answered the websocket handshake with a wrong key")
        except BaseException:
            sock.close()
            raise
        socket_ = cls(sock)
        socket_._buffer = rest
        return socket_

    def _read(self, count: int, timeout: float) -> bytes | None:
        """`count` bytes, or None when nothing arrived within `timeout` (a partial read is kept)."""
        self.sock.settimeout(timeout)
        while len(self._buffer) < count:
            try:
                chunk = self.sock.recv(max(65536, count - len(self._buffer)))
            except TimeoutError:  # socket.timeout is this since Python 3.10
                return None
            except OSError as exc:
                raise WebSocketClosed(str(exc)) from exc
            if not chunk:
                raise WebSocketClosed("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _read_frame(self, timeout: float) -> tuple[bool, int, bytes] | None:
        head = self._read(2, timeout)
        if head is None:
            return None
        # The rest of a frame follows its first bytes closely: wait for it a little longer.
        first, second = head
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._need(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._need(8))[0]
        if length + sum(map(len, self._parts)) > self.max_message:
            self.close()
            raise WebSocketClosed(f"a websocket message is larger than {self.max_message} bytes")
        key = self._need(4) if second & 0x80 else b""
        payload = self._need(length) if length else b""
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def _need(self, count: int, timeout: float = 30.0) -> bytes:
        data = self._read(count, timeout)
        if data is None:
            raise WebSocketClosed("the server stopped in the middle of a websocket frame")
        return data

    def receive(self, timeout: float) -> tuple[int, bytes] | None:
        """The next whole message as (TEXT or BINARY, payload), or None after `timeout` seconds
        without a frame. Raises WebSocketClosed when the connection ends."""
        for _ in range(1000):  # control frames between messages; bounded
            got = self._read_frame(timeout)
            if got is None:
                return None
            final, opcode, payload = got
            if opcode == PING:
                self._send(PONG, payload)
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                try:
                    self._send(CLOSE, payload[:2])
                finally:
                    self.sock.close()
                raise WebSocketClosed("the server closed the websocket")
            if opcode != CONTINUATION:
                self._kind, self._parts = opcode, []
            self._parts.append(payload)
            if final:
                message, self._parts = b"".join(self._parts), []
                return self._kind, message
        return None

    def _send(self, opcode: int, payload: bytes) -> None:
        try:
            self.sock.sendall(frame(opcode, payload))
        except OSError as exc:
            raise WebSocketClosed(str(exc)) from exc

    def send_text(self, text: str) -> None:
        self._send(TEXT, text.encode())

    def wake(self) -> None:
        """From another thread: make a waiting `receive` end (with WebSocketClosed)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
        except OSError:
            pass
        finally:
            self.sock.close()
