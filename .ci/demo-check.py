#!/usr/bin/env python3
"""Checks a running `switchyard demo`: the chat page loads and one WebSocket
message sent to /ws/chat comes back as the broadcast. Exits non-zero with a
reason otherwise. Usage: demo-check.py [HOST:PORT] [SECONDS-TO-WAIT]"""
import base64, os, socket, sys, time

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8080"
wait = float(sys.argv[2]) if len(sys.argv) > 2 else 600
host, port = addr.rsplit(":", 1)
port = int(port)


def fail(why):
    print(f"demo-check: {why}", file=sys.stderr)
    sys.exit(1)


def connect():
    return socket.create_connection((host, port), timeout=10)


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            fail(f"connection closed before a full response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


deadline = time.monotonic() + wait
while True:  # the first run compiles the release binary first
    try:
        connect().close()
        break
    except OSError:
        if time.monotonic() > deadline:
            fail(f"nothing listens on {addr} after {wait:.0f} s")
        time.sleep(0.5)

def get(path):
    s = connect()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
    page = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        page += chunk
    s.close()
    return page


page = get("/")
if not page.startswith(b"HTTP/1.1 200") or b"WebSocket" not in page:
    fail(f"GET / did not return the chat page: {page[:200]!r}")
page = get("/status")
if not page.startswith(b"HTTP/1.1 200") or b"Switchyard status" not in page:
    fail(f"GET /status did not return the status page: {page[:200]!r}")
page = get("/metrics")
if not page.startswith(b"HTTP/1.1 200") or b"switchyard_connections_accepted_total" not in page:
    fail(f"GET /metrics did not return the metrics: {page[:200]!r}")

key = base64.b64encode(os.urandom(16)).decode()
s = connect()
s.sendall(
    (
        f"GET /ws/chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
)
head, rest = read_head(s)
if not head.startswith("HTTP/1.1 101"):
    fail(f"the WebSocket handshake was answered {head.splitlines()[0]!r}")
text = b"hello from CI"
mask = os.urandom(4)
frame = bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))
s.sendall(frame)
data = rest
while len(data) < 2 + len(text):
    chunk = s.recv(4096)
    if not chunk:
        fail(f"the WebSocket closed before the broadcast came back: {data!r}")
    data += chunk
if data[0] != 0x81 or data[1] != len(text) or data[2 : 2 + len(text)] != text:
    fail(f"unexpected frame back: {data!r}")
s.close()
print(f"demo-check: chat page, status page and metrics served, a WebSocket message echoed through {addr}")
