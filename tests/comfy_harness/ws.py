"""A minimal stdlib WebSocket client that records ComfyUI's JSON event messages.

ComfyUI reports progress ('progress', 'progress_state', 'executing', 'execution_error',
'execution_interrupted', ...) only over /ws, to the client_id that queued the prompt. This
reads them in a background thread so a test can wait for e.g. "node 5 reached step 2".

Protocol subset (RFC 6455): HTTP/1.1 upgrade; text frames (fragmented or not) are decoded as
JSON; binary frames (preview images) are skipped; pings are answered; a close ends the
reader. Frames we send are masked, as clients must; server frames are unmasked (a masked
one is unmasked anyway).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class EventStream:
    """Connects to ws://host:port/ws?clientId=... and keeps every JSON message received."""

    def __init__(self, host: str, port: int, client_id: str, timeout: float = 10.0):
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = _handshake(self._sock, f"{host}:{port}", f"/ws?clientId={client_id}")
        self._sock.settimeout(None)
        self._send_lock = threading.Lock()
        self._changed = threading.Condition()
        self._messages: list[dict] = []
        self.closed = False
        self._thread = threading.Thread(target=self._read_loop, name="comfy-ws", daemon=True)
        self._thread.start()

    def messages(self) -> list[dict]:
        with self._changed:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> dict:
        """The first message (already received or arriving within `timeout` s) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for message in self._messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self._messages)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    state = "closed" if self.closed else f"no match within {timeout} s"
                    raise TimeoutError(f"websocket {state}; last messages: {self._messages[-5:]}")
                self._changed.wait(left)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                self._send(OP_CLOSE, struct.pack("!H", 1000))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread blocked in recv
        self._sock.close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ reading

    def _read_loop(self) -> None:
        parts: list[bytes] = []
        kind = None
        try:
            while True:
                fin, opcode, payload = self._read_frame()
                if opcode == OP_CLOSE:
                    self._send(OP_CLOSE, payload[:2])
                    break
                if opcode == OP_PING:
                    self._send(OP_PONG, payload)
                elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                    kind = opcode if opcode != OP_CONT else kind
                    parts.append(payload)
                    if fin:
                        if kind == OP_TEXT:
                            self._record(b"".join(parts))
                        parts, kind = [], None
        except (OSError, ConnectionError):
            pass
        finally:
            with self._changed:
                self.closed = True
                self._changed.notify_all()

    def _record(self, text: bytes) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        mask = self._read_exact(4) if second & 0x80 else None
        payload = self._read_exact(length)
        if mask:
            payload = _apply_mask(payload, mask)
        return bool(first & 0x80), first & 0x0F, payload

    def _read_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    # ------------------------------------------------------------------ writing

    def _send(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        with self._send_lock:
            self._sock.sendall(header + mask + _apply_mask(payload, mask))


def _handshake(sock: socket.socket, host: str, path: str) -> bytes:
    """Send the upgrade request; return bytes already read past the response headers."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"websocket handshake: connection closed after {response!r}")
        response += chunk
    head, rest = response.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
    if lines[0].split()[1:2] != ["101"] or headers.get("sec-websocket-accept") != expected:
        raise ConnectionError(f"websocket handshake refused: {lines[0]}")
    return rest


def _apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR with the repeating 4-byte key (its own inverse), done on big ints for speed."""
    if not data:
        return data
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")
