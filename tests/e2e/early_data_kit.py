"""Helpers for the websocket early data tests."""

import re
import socket
import threading

from harness import HOST

FIRST = 16 << 10  # kaminaric's first read takes at most this much


def exchange_now(port, data, timeout=60.0):
    """As harness.exchange (send, half-close, read until EOF), but the first bytes are written
    right after the connect, before any thread starts: they are there when kaminaric begins
    its 50 ms wait for them, however loaded the machine is."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    received = bytearray()
    error = []
    try:
        s.sendall(data[:FIRST])
    except OSError as e:
        error.append(e)

    def reader():
        try:
            while chunk := s.recv(1 << 16):
                received.extend(chunk)
        except OSError as e:
            error.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        s.sendall(data[FIRST:])
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        error.append(e)
    t.join(timeout)
    s.close()
    if t.is_alive():
        raise AssertionError(f"no EOF after {timeout}s ({len(received)} bytes received)")
    if error:
        raise AssertionError(f"socket error: {error[0]} ({len(received)} bytes received)")
    return bytes(received)


def conn_ids(log, pattern):
    """{connection id: int(group 1)} for every log line matching `#<id> <pattern>`."""
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"#(\d+) " + pattern, log)}
