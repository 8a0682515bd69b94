"""A TCP proxy on loopback that models a network path with a round-trip time, for counting
round trips (test_round_trips.py).

Every chunk read on one side is written to the other side `one_way` seconds later, in order;
an end of stream travels the same way (a half-close passes through as a half-close) and a
reset ends both sides. A new connection is also charged one round trip before its first
byte passes in either direction, the cost of the TCP handshake: the proxy holds an accepted
connection for 2 * `one_way` before it connects onward and starts forwarding. So a direct
request and its reply through the proxy take 2 RTT from the client's connect, as on a real
network (SYN and SYN-ACK, then the request and the reply), and 1 RTT on a connection that is
already open. A connection whose SYN carried data (TCP Fast Open, where the kernel allows it
on loopback: net.ipv4.tcp_fastopen=3) is not charged: its first bytes pass at once, like any
later ones, and the proxy logs `fast open` for it. (A server that speaks first gets its first
bytes to the client half a round trip early in this model; the tests' targets never do.)

It runs in a process of its own, `python3 delay_proxy.py <one-way ms> <upstream port> ...`
(it prints the port it listens on for each), so that the test's threads cannot hold up its
timers; `start()` does that. Pure stdlib asyncio. DELAY_PROXY_TRACE=1 logs every chunk with
its times (in the proxy's log). It raises its scheduling priority where allowed (see
raise_priority()); DELAY_PROXY_PRIORITY=0 keeps it as it is.

The proxy reads as fast as its peers write and queues without limit: it is meant for small
exchanges, not for bulk transfers (no back-pressure)."""

import asyncio
import os
import socket
import sys
import time

HOST = "127.0.0.1"
TRACE = bool(os.environ.get("DELAY_PROXY_TRACE"))


def _trace(what, n, due=None):
    if TRACE:
        late = f" late {(time.monotonic() - due) * 1000:.1f} ms" if due is not None else ""
        print(f"{time.monotonic():.4f} {what} {n}{late}", flush=True)


def _abort(writer):
    transport = writer.transport
    if transport is not None and not transport.is_closing():
        transport.abort()


async def _pump(reader, writer, one_way, name):
    """Copies reader to writer, each chunk and the end of stream `one_way` seconds after it was
    read, in order. A reset on the reading side resets the writing side at once."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                chunk = await reader.read(1 << 16)
                _trace(f"{name} read", len(chunk))
                queue.put_nowait((loop.time() + one_way, chunk))
                if not chunk:
                    return
        except OSError:
            queue.put_nowait((loop.time(), None))

    reading = asyncio.ensure_future(read_side())
    try:
        while True:
            due, chunk = await queue.get()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if chunk is None:
                _trace(f"{name} reset", 0)
                _abort(writer)
                return False
            if not chunk:
                _trace(f"{name} eof", 0, due)
                if writer.can_write_eof():
                    writer.write_eof()
                return True
            writer.write(chunk)
            _trace(f"{name} write", len(chunk), due)
            await writer.drain()
    except OSError:
        return False
    finally:
        reading.cancel()


def _nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


TCPI_OPT_SYN_DATA = 0x20  # tcp_info.tcpi_options: the SYN carried data (TCP Fast Open)


def _fast_open(writer):
    """Whether the accepted connection's SYN carried data (TCP Fast Open)."""
    sock = writer.get_extra_info("socket")
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return False
    return bool(info[5] & TCPI_OPT_SYN_DATA)


async def _serve(client_reader, client_writer, upstream_port, one_way):
    _nodelay(client_writer)
    if _fast_open(client_writer):
        # TCP Fast Open: the first bytes came with the SYN, so the handshake costs them
        # nothing; they pass like any later ones.
        print("fast open", flush=True)
    else:
        # The TCP handshake: nothing passes either way for one round trip.
        await asyncio.sleep(2 * one_way)
    try:
        up_reader, up_writer = await asyncio.open_connection(HOST, upstream_port)
    except OSError:
        _abort(client_writer)
        return
    _nodelay(up_writer)
    pumps = {asyncio.ensure_future(_pump(client_reader, up_writer, one_way, "up")),
             asyncio.ensure_future(_pump(up_reader, client_writer, one_way, "down"))}
    while pumps:
        finished, pumps = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        if any(t.exception() is not None or not t.result() for t in finished):
            # A reset or an error in one direction ends the connection, as the hosts see it.
            for w in (client_writer, up_writer):
                _abort(w)
    for w in (client_writer, up_writer):
        w.close()


def _listener():
    """A listening socket on loopback that accepts TCP Fast Open where the kernel allows it
    (net.ipv4.tcp_fastopen with the server bit, 2, set)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 256)
    except OSError:
        pass
    sock.listen(256)
    return sock


async def _main(upstream_ports, one_way):
    servers = []
    for upstream_port in upstream_ports:
        servers.append(await asyncio.start_server(
            lambda r, w, up=upstream_port: _serve(r, w, up, one_way), sock=_listener()))
        port = servers[-1].sockets[0].getsockname()[1]
        print(f"listening {port} -> {upstream_port}", flush=True)
    await asyncio.Event().wait()  # until killed


def read_log(proc):
    """What a harness.Proc has logged so far, read through a file description of its own.
    (Proc.stderr_text() seeks the description the child writes through: a line the child
    writes meanwhile lands at the start of the file, over earlier lines.)"""
    with open(f"/proc/self/fd/{proc.log.fileno()}", "rb") as f:
        return f.read().decode(errors="replace")


def start(upstream_ports, one_way_ms=50, timeout=10.0):
    """Starts one proxy process (killed when the test ends) with a listening port of its own
    choosing in front of each upstream port; returns (proc, [listening ports]). An upstream
    need not listen yet: the proxy connects onward only when a connection comes in."""
    import re
    from harness import Proc
    proc = Proc([sys.executable, os.path.abspath(__file__), str(one_way_ms)] +
                [str(u) for u in upstream_ports])
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = re.findall(r"^listening (\d+) -> (\d+)$", read_log(proc), re.M)
        if len(found) == len(upstream_ports):
            return proc, [int(p) for p, _ in found]
        if proc.poll() is not None:
            raise AssertionError(f"delay proxy exited with {proc.returncode}: "
                                 f"{read_log(proc)}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"delay proxy not listening after {timeout}s: {read_log(proc)}")


def raise_priority():
    """Moves this process (and what it starts later) ahead of the machine's other work, where
    that is allowed (root or CAP_SYS_NICE): the round-robin real-time class at its lowest
    priority, else nice -10. Returns what it got: "SCHED_RR", "nice -10" or "none".

    Timers and wake-ups are the instrument here. On a loaded machine a normal process wakes
    up 5-20 ms late, several times per tunnel connection, which adds up to half a round trip
    over the ~8 one-way trips of a wss connection. Nice alone does not help much where the
    kernel groups processes by session (autogroup: nice only ranks within the group); the
    real-time class does. The processes that get it use little CPU (a few exchanges of a few
    bytes), and the kernel keeps 5 % of each second for normal processes anyway.
    DELAY_PROXY_PRIORITY=0 leaves the priority as it is."""
    if os.environ.get("DELAY_PROXY_PRIORITY") == "0":
        return "none"
    if os.sched_getscheduler(0) == os.SCHED_RR:
        return "SCHED_RR"
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return "SCHED_RR"
    except (OSError, AttributeError):
        pass
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > -10:
            os.setpriority(os.PRIO_PROCESS, 0, -10)
        return "nice -10"
    except OSError:
        return "none"


if __name__ == "__main__":
    ms = float(sys.argv[1])
    print(f"delay proxy: {ms:g} ms each way; priority: {raise_priority()}", flush=True)
    try:
        asyncio.run(_main([int(a) for a in sys.argv[2:]], ms / 1000.0))
    except KeyboardInterrupt:
        pass
