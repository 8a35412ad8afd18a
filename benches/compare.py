#!/usr/bin/env python3
"""The helper behind benches/compare: nexushub against nginx and HAProxy, one run.

benches/compare installs the tools, builds nexushub and raises the open-file
limit; this file does the rest with the standard library only:

  run   start one plain-HTTP nginx backend and three TLS proxies in front of it
        (nexushub, nginx, HAProxy; same ECDSA P-256 certificate), check that each
        answers correctly, drive wrk through every scenario with the targets
        alternating A B C D round after round, sample CPU time and memory from
        /proc, hold 1,000 and 10,000 idle TLS connections, then write a Markdown
        table, a JSON dump and an SVG chart of the ratios to benches/results/;
        then the WebSocket scenarios (WS_SCENARIOS) through the same proxies to
        `wsbench echo-server`, driven by `wsbench load`/`bulk`, and the memory
        with idle tunnels held by `wsbench hold`: benches/results/websocket.md
        and websocket.json (`--only ws`: these alone).
  hold  open N keep-alive TLS connections, send one request on each, read the
        answer, print READY and idle until stdin closes (the memory scenarios).

Every process started here gets its own process group, recorded in a pid file so
that benches/compare's exit trap can end them even if this helper is killed;
everything listens on 127.0.0.1 only; every wait has a deadline.
"""

import argparse
import datetime
import hashlib
import html
import json
import os
import platform
import re
import resource
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_BODY = b"Hello, world!"  # 13 bytes, the backend's small answer
BIG_SIZE = 1 << 20  # the backend's large file
HOST = "localhost"  # a name, so that wrk and the helpers send SNI
WRK_THREADS = 2
# Marks the new-connection scenario's requests in the access logs, so that the
# resumption rate can be counted there (nginx: $ssl_session_reused, HAProxy:
# ssl_fc_is_resumed).
CLOSE_MARK = "/small?close"

# (key, title, path, connections, Connection: close)
SCENARIOS = [
    ("ka16", "keep-alive, 13 B, 16 conns", "/small", 16, False),
    ("ka64", "keep-alive, 13 B, 64 conns", "/small", 64, False),
    ("ka256", "keep-alive, 13 B, 256 conns", "/small", 256, False),
    ("big", "keep-alive, 1 MiB, 16 conns", "/1m", 16, False),
    ("close", "new TLS conn per request, 13 B, 16 conns", CLOSE_MARK, 16, True),
]
# WebSocket scenarios (benches/wsbench.rs against its own echo backend): (key,
# title, wsbench command, tunnels, message bytes). Every proxy tunnels WS_PATH to
# the echo backend; nexushub, which routes by host only, has an app for WS_HOST,
# the host all three are sent: one the committed certificate names (webpki does not
# let its `*.localhost` cover a name right under `localhost`).
WS_SCENARIOS = [
    ("ws-echo", "WebSocket echo, 64 B messages, 64 tunnels", "load", 64, 64),
    ("ws-bulk", "WebSocket echo, 1 MiB messages, 16 tunnels", "bulk", 16, 1 << 20),
]
WS_HOST = "hello.localhost"
WS_PATH = "/ws"
PROXIES = ["nexushub", "nginx", "haproxy"]
TARGETS = PROXIES + ["backend"]
LABEL = {"nexushub": "nexushub", "nginx": "nginx", "haproxy": "HAProxy", "backend": "backend direct (plain HTTP)"}

# wrk's done() hook: one machine-readable line (latencies in microseconds).
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"connect\":%d,\"read\":%d," ..
    "\"write\":%d,\"status\":%d,\"timeout\":%d,\"p50\":%.1f,\"p99\":%.1f,\"mean\":%.1f,\"max\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


class BenchError(Exception):
    """A failure that ends the run with a one-line message."""


def log(msg):
    """Progress on stderr, timestamped from the start of the run."""
    sys.stderr.write(f"[{time.monotonic() - T0:6.1f}s] {msg}\n")
    sys.stderr.flush()


T0 = time.monotonic()


# ---------------------------------------------------------------- /proc sampling


def proc_table():
    """pid -> (ppid, utime+stime ticks) for every process visible now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("latin-1")
        except OSError:
            continue
        # Fields after the command name, which may contain spaces and parens.
        rest = data[data.rfind(")") + 2 :].split()
        try:
            table[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
        except (IndexError, ValueError):
            continue
    return table


def tree(root, table=None):
    """root and all its descendants that are alive now."""
    table = table if table is not None else proc_table()
    if root not in table:
        return []
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(root):
    """utime+stime of root and its descendants, in clock ticks."""
    table = proc_table()
    return sum(table[p][1] for p in tree(root, table))


def memory_kib(root):
    """(RSS, PSS) in KiB summed over root and its descendants."""
    rss = pss = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return rss, pss


# ---------------------------------------------------------------- processes


class Server:
    """A process we started in its own process group, with its output in a file."""

    def __init__(self, name, argv, logpath, pidfile, cwd=None):
        self.name = name
        self.logpath = logpath
        self.out = open(logpath, "ab")
        self.proc = subprocess.Popen(
            argv, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, start_new_session=True,
        )
        self.pid = self.proc.pid
        with open(pidfile, "a") as f:
            f.write(f"{self.pid}\n")

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        """TERM the group, wait up to 10 s, then KILL it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (nginx workers): make sure it is gone.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.out.close()


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(server, port, deadline_s=20):
    """Until port accepts TCP connections; fails if the server dies first."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not server.alive():
            raise BenchError(f"{server.name} exited at start:\n{server.log_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{server.name} not listening on 127.0.0.1:{port} after {deadline_s}s")


def wait_log(server, pattern, deadline_s=20):
    """Until the server's output matches pattern; fails if it dies first."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if re.search(pattern, server.log_text()):
            return
        if not server.alive():
            raise BenchError(f"{server.name} exited at start:\n{server.log_text()[-2000:]}")
        time.sleep(0.05)
    raise BenchError(f"{server.name}: no {pattern!r} in its log after {deadline_s}s")


# ---------------------------------------------------------------- configs


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def nofile():
    """The open-file limit every server inherits (benches/compare raised it)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def nginx_backend_conf(d, port):
    return f"""# The shared plain-HTTP backend (the floor).
worker_processes auto;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
worker_rlimit_nofile {nofile()};
events {{ worker_connections {min(20000, nofile() - 200)}; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /small {{ default_type text/plain; return 200 "Hello, world!"; }}
        location / {{ root {d}/www; }}
    }}
}}
"""


def nginx_proxy_conf(d, port, backend_port, cert, key, ws_port=None):
    # WebSocket tunnels to the echo backend on /ws, nginx's documented way: HTTP/1.1
    # upstream, Upgrade and Connection passed on, timeouts as long as nexushub's
    # tunnel_idle_timeout (nginx's default 60 s would close idle tunnels).
    ws_upstream = ws_location = ""
    if ws_port:
        ws_upstream = f"""
    upstream wsecho {{
        server 127.0.0.1:{ws_port};
    }}"""
        ws_location = f"""
        location {WS_PATH} {{
            proxy_pass http://wsecho;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
            # A tunnel's buffer each way: one TLS record, as for / and HAProxy
            # (the other two lines only keep nginx's buffer checks satisfied).
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_busy_buffers_size 16k;
        }}"""
    return f"""# nginx as the TLS proxy: upstream keep-alive, buffered access log.
worker_processes auto;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
worker_rlimit_nofile {nofile()};
events {{ worker_connections {min(20000, nofile() - 200)}; }}
http {{
    log_format bench '$remote_addr [$time_iso8601] $host "$request" $status $body_bytes_sent $request_time $ssl_session_reused';
    access_log {d}/access.log bench buffer=64k flush=1s;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    ssl_session_cache shared:SSL:20m;
    ssl_session_timeout 1h;
    ssl_session_tickets on;
    ssl_protocols TLSv1.2 TLSv1.3;  # 1.22 leaves TLS 1.3 off by default; the others offer it
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}{ws_upstream}
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        server_name {HOST};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_buffering off;
            # With buffering off nginx reads the backend proxy_buffer_size at a
            # time (default: one 4 KiB page), which halves its 1 MiB throughput;
            # 16 KiB is one full TLS record, as HAProxy's default buffer.
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_busy_buffers_size 16k;
        }}{ws_location}
    }}
}}
"""


def haproxy_conf(d, port, backend_port, pem, nbthread, ws_port=None):
    # WebSocket: mode http tunnels an upgrade by itself; /ws goes to the echo
    # backend, whose tunnels idle up to 600 s (`timeout tunnel`), as nexushub's.
    ws_use = ws_backend = ""
    if ws_port:
        ws_use = f"\n    use_backend ws if {{ path_beg {WS_PATH} }}"
        ws_backend = f"""
backend ws
    timeout tunnel 600s
    server echo 127.0.0.1:{ws_port}
"""
    return f"""# HAProxy as the TLS proxy: mode http, http-reuse safe, one thread per core.
global
    maxconn {min(40000, nofile() - 500)}
    # HAProxy reserves two descriptors per connection; an idle client connection
    # uses one, so 10,000 of them fit under a 20,000 limit: let it start anyway
    # (it warns "FD limit too low for maxconn").
    ulimit-n {nofile()}
    no strict-limits
    nbthread {nbthread}
    stats socket {d}/admin.sock mode 600 level admin
    ssl-default-bind-options ssl-min-ver TLSv1.2
    tune.ssl.cachesize 100000

# The access log goes to an in-memory ring (HAProxy cannot write a file itself;
# a syslog daemon would cost CPU the others do not pay). Read with `show events`.
ring accesslog
    format raw
    maxlen 1024
    size 33554432

defaults
    mode http
    log ring@accesslog local0
    log-format "%ci:%cp [%tr] %[capture.req.hdr(0)] %{{+Q}}r %ST %B %Ta %[ssl_fc_is_resumed]"
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 300s

frontend tls
    bind 127.0.0.1:{port} ssl crt {pem} alpn http/1.1 backlog 4096
    capture request header Host len 64
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]{ws_use}
    default_backend app

backend app
    http-reuse safe
    server backend 127.0.0.1:{backend_port}
{ws_backend}"""


def nexushub_conf(d, port, backend_port, cert, key, ws_port=None):
    # nexushub routes by host name only: the echo backend is an app of its own,
    # for the host the WebSocket clients send to all three proxies.
    ws_app = ""
    if ws_port:
        ws_app = f"""
[app ws]
hosts = {WS_HOST}
upstream = 127.0.0.1:{ws_port}
health = /
"""
    return f"""# nexushub as the TLS proxy: one upstream app for host localhost.
[proxy]
listen = 127.0.0.1:{port}
cert = {cert}
key = {key}
access_log = {d}/access.log
idle_timeout = 300
max_connections = 20000
max_connections_per_ip = 20000
log_level = info

[app bench]
hosts = {HOST}
upstream = 127.0.0.1:{backend_port}
health = /small
{ws_app}"""


# ---------------------------------------------------------------- HTTP checks


def client_ctx(ca, tls12=False):
    ctx = ssl.create_default_context(cafile=ca)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def read_response(sock):
    """One HTTP/1.1 response with Content-Length or chunked: (status, headers, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError(f"connection closed before the response head ({buf[:200]!r})")
        buf += chunk
        if len(buf) > 65536:
            raise BenchError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(rest) < need:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise BenchError("connection closed inside the body")
            rest += chunk
        return status, headers, rest[:need]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    raise BenchError("connection closed inside a chunk size")
                rest += chunk
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise BenchError("connection closed inside a chunk")
                rest += chunk
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                return status, headers, body
    raise BenchError("response without a length")


def tls_get(port, path, ctx, session=None):
    """GET path over a fresh TLS connection: (status, body, tls socket facts)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=HOST, session=session) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: compare\r\n\r\n".encode())
        status, _, body = read_response(s)
        facts = {"version": s.version(), "cipher": s.cipher()[0], "reused": s.session_reused, "session": s.session}
        return status, body, facts


def sanity(name, port, ca, big_sha):
    """The proxy answers both paths correctly; returns its TLS facts."""
    ctx = client_ctx(ca)
    last = None
    for _ in range(100):  # nexushub's app needs a health check before it routes
        try:
            status, body, facts = tls_get(port, "/small", ctx)
            if status == 200:
                break
            last = f"status {status}: {body[:200]!r}"
        except (OSError, BenchError) as e:
            last = str(e)
        time.sleep(0.1)
    else:
        raise BenchError(f"{name}: GET /small never answered 200 ({last})")
    if body != SMALL_BODY:
        raise BenchError(f"{name}: GET /small body {body[:100]!r}, expected {SMALL_BODY!r}")
    status, body, _ = tls_get(port, "/1m", ctx)
    if status != 200 or hashlib.sha256(body).hexdigest() != big_sha:
        raise BenchError(f"{name}: GET /1m answered {status} with {len(body)} bytes not matching the file")
    # Resumption as a plain OpenSSL client sees it (TLS 1.3, then TLS 1.2).
    out = {"version": facts["version"], "cipher": facts["cipher"]}
    for label, c in (("tls13", ctx), ("tls12", client_ctx(ca, tls12=True))):
        _, _, first = tls_get(port, "/small", c)
        _, _, second = tls_get(port, "/small", c, session=first["session"])
        out[f"resume_{label}"] = bool(second["reused"])
    return out


def plain_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        return read_response(s)


# ---------------------------------------------------------------- wrk


def run_wrk(url, conns, seconds, close, lua):
    argv = ["wrk", "-t", str(WRK_THREADS), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "5s", "-s", lua]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"^WRKJSON (\{.*\})$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise BenchError(f"wrk failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    return r


# ---------------------------------------------------------------- hold


def cmd_hold(args):
    """Open args.n TLS connections, one request each, then idle until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.n + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = f"GET /small HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: compare-hold\r\n\r\n".encode()
    kept, errors = [], []
    lock = threading.Lock()
    deadline = time.monotonic() + args.deadline

    def one(_):
        if time.monotonic() > deadline:
            with lock:
                errors.append("deadline")
            return
        try:
            raw = socket.create_connection(("127.0.0.1", args.port), timeout=20)
            s = ctx.wrap_socket(raw, server_hostname=HOST)
            s.sendall(req)
            status, _, body = read_response(s)
            if status != 200 or body != SMALL_BODY:
                raise BenchError(f"status {status}")
            with lock:
                kept.append(s)
        except (OSError, BenchError, ValueError) as e:
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as ex:
        list(ex.map(one, range(args.n)))
    took = time.monotonic() - start
    first = errors[0] if errors else ""
    print(f"READY {len(kept)} {len(errors)} {took:.1f} {first}", flush=True)
    sys.stdin.read()  # idle until the parent closes our stdin
    # Check the connections are still open (the proxy did not drop idle ones).
    alive = 0
    for s in kept:
        try:
            s.setblocking(False)
            try:
                alive += 1 if s.recv(1) else 0
            except (ssl.SSLWantReadError, BlockingIOError):
                alive += 1
        except OSError:
            pass
    print(f"ALIVE {alive}", flush=True)
    for s in kept:
        try:
            s.close()
        except OSError:
            pass
    return 0


def hold_connections(name, root, port, n, pidfile, tmp, deadline):
    """Runs `hold` for n connections against port; measures while they idle."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "hold", "--port", str(port), "--n", str(n),
         "--deadline", str(deadline)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, f"hold-{name}-{n}.log"), "wb"),
        start_new_session=True,
    )
    with open(pidfile, "a") as f:
        f.write(f"{proc.pid}\n")
    try:
        end = time.monotonic() + deadline + 30
        line = b""
        while time.monotonic() < end and not line.endswith(b"\n"):
            r, _, _ = select.select([proc.stdout], [], [], 1)
            if r:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        parts = line.decode(errors="replace").split(" ", 4)
        if len(parts) < 4 or parts[0] != "READY":
            return {"ok": 0, "failed": n, "secs": None, "error": f"holder gave {line[:200]!r}", "rss": None,
                    "pss": None, "alive": None}
        ok, failed, secs = int(parts[1]), int(parts[2]), float(parts[3])
        time.sleep(1.0)  # let the proxy settle (parked, buffers released)
        rss, pss = memory_kib(root) if ok else (None, None)
        # Release the holder; it reports how many connections were still open.
        proc.stdin.close()
        rest, end = b"", time.monotonic() + 60
        while time.monotonic() < end and b"ALIVE" not in rest:
            r, _, _ = select.select([proc.stdout], [], [], 1)
            if r:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                rest += chunk
        m = re.search(rb"ALIVE (\d+)", rest)
        return {"ok": ok, "failed": failed, "secs": secs, "error": parts[4].strip() if len(parts) > 4 else "",
                "rss": rss, "pss": pss, "alive": int(m.group(1)) if m else None}
    finally:
        try:
            if not proc.stdin.closed:
                proc.stdin.close()
            proc.wait(timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


# ---------------------------------------------------------------- resumption counts


def nginx_resumption(server, logpath):
    """(resumed, total) over the close scenario's lines of nginx's access log."""
    try:
        os.kill(server.pid, signal.SIGUSR1)  # reopen: flushes the log buffer
    except ProcessLookupError:
        return None
    time.sleep(1.0)
    resumed = total = 0
    try:
        with open(logpath, "rb") as f:
            for line in f:
                if CLOSE_MARK.encode() in line:
                    total += 1
                    resumed += line.rstrip().endswith(b" r")
    except OSError:
        return None
    return resumed, total


def haproxy_resumption(sock_path):
    """(resumed, total) over the close scenario's lines still in HAProxy's log ring."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(sock_path)
            s.sendall(b"show events accesslog\n")
            data = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    resumed = total = 0
    for line in data.splitlines():
        if CLOSE_MARK.encode() in line:
            total += 1
            resumed += line.rstrip().endswith(b" 1")
    return resumed, total


# ---------------------------------------------------------------- report


# Lines nexushub logs when a client goes away mid-request or mid-handshake: wrk
# does so to every connection at the end of each run, so these are expected.
CLIENT_GONE = re.compile(r"reset by peer|Broken pipe|closed by client|unexpected eof|connection aborted", re.I)


def nexushub_log_summary(text):
    """(counts of nexushub's log lines by kind, unexpected WARN/ERROR lines)."""
    kinds, bad = {}, []
    for line in text.splitlines():
        m = re.match(r"\S+ \[(\w+)\] (.*)", line)
        if not m:
            if line.strip():
                bad.append(line)
            continue
        level, msg = m.groups()
        kind = re.sub(r"127\.0\.0\.1:\d+", "ADDR", msg)
        kind = re.sub(r" /\S*", " PATH", kind)
        kinds[f"[{level}] {kind}"] = kinds.get(f"[{level}] {kind}", 0) + 1
        if (level in ("WARN", "ERROR") and not CLIENT_GONE.search(msg)) or "panicked" in msg:
            bad.append(line)
    return kinds, bad


def access_statuses(path):
    """Status -> count over an access log in nexushub's format."""
    counts = {}
    try:
        with open(path, "rb") as f:
            for line in f:
                m = re.search(rb'" (\d{1,3}) \d+ ', line)
                key = m.group(1).decode() if m else "unparsed"
                counts[key] = counts.get(key, 0) + 1
    except OSError:
        return {"no access log": 1}
    return counts


def fmt_int(x):
    return f"{x:,.0f}" if x is not None else "-"


def fmt_ms(us):
    return f"{us / 1000:.2f}" if us is not None else "-"


def fmt_mib(kib):
    return f"{kib / 1024:.1f}" if kib is not None else "-"


def summarize(runs):
    """Medians and ranges over the measured rounds of one scenario and target."""
    if not runs:
        return None
    rps = [r["rps"] for r in runs]
    cpu = [r["cpu_us"] for r in runs if r.get("cpu_us") is not None]
    return {
        "rps": statistics.median(rps),
        "min": min(rps),
        "max": max(rps),
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
        "cpu_us": statistics.median(cpu) if cpu else None,
        "errors": sum(r["connect"] + r["read"] + r["write"] + r["timeout"] for r in runs),
        "non2xx": sum(r["status"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "rounds": len(runs),
    }


def ratio(a, b):
    return a / b if a and b else None


def svg_chart(rows, path, title, subtitle):
    """Horizontal grouped bars: nexushub/nginx and nexushub/HAProxy per scenario."""
    vals = [v for _, a, b in rows for v in (a, b) if v is not None]
    top = max([1.25] + [v * 1.1 for v in vals])
    left, width, bar, gap = 300, 440, 16, 18
    height = 70 + len(rows) * (2 * bar + gap) + 50
    x = lambda v: left + width * v / top  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="10" y="{height - 8}" font-size="11" fill="#555">{html.escape(subtitle)}</text>',
        f'<rect x="{left}" y="34" width="12" height="12" fill="#2b6cb0"/>'
        f'<text x="{left + 18}" y="45">nexushub / nginx</text>',
        f'<rect x="{left + 150}" y="34" width="12" height="12" fill="#dd6b20"/>'
        f'<text x="{left + 168}" y="45">nexushub / HAProxy</text>',
    ]
    y = 62
    for label, a, b in rows:
        out.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{html.escape(label)}</text>')
        for v, color in ((a, "#2b6cb0"), (b, "#dd6b20")):
            if v is not None:
                out.append(f'<rect x="{left}" y="{y}" width="{x(v) - left:.1f}" height="{bar - 2}" fill="{color}"/>')
                out.append(f'<text x="{x(v) + 4:.1f}" y="{y + bar - 5}">{v:.2f}</text>')
            else:
                out.append(f'<text x="{left + 4}" y="{y + bar - 5}">n/a</text>')
            y += bar
        y += gap
    one = x(1.0)
    out.append(f'<line x1="{one:.1f}" y1="54" x2="{one:.1f}" y2="{y}" stroke="black" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{one:.1f}" y="{y + 14}" text-anchor="middle">1.0 = parity (right of it: nexushub faster)</text>')
    out.append(f'<line x1="{left}" y1="54" x2="{left}" y2="{y}" stroke="#888"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (p.stdout + p.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def write_report(ctx, results, memory, tls, resumption, anomalies, outdir):
    a = ctx["args"]
    L = []
    L.append("# nexushub vs nginx vs HAProxy")
    L.append("")
    L.append(f"- date: {ctx['date']}")
    L.append(f"- machine: `nproc` = {os.cpu_count()}, CPU: {cpu_model()}, kernel {platform.release()}, "
             f"load average at start {ctx['loadavg']}")
    L.append(f"- command: `{a.cmdline}`" + (" (quick mode)" if a.quick else ""))
    L.append(f"- nexushub: {ctx['nexushub_rev']}; {ctx['versions']['nginx']}; {ctx['versions']['haproxy']}; "
             f"{ctx['versions']['wrk']}")
    L.append(f"- wrk: {WRK_THREADS} threads, {a.duration} s per run, {a.rounds} measured rounds per scenario after one "
             f"{a.warmup} s warm-up run per target; targets alternate nexushub, nginx, HAProxy, backend in every "
             "round; each run opens its connections afresh, so their handshakes count in its time")
    L.append("- all on 127.0.0.1, the same ECDSA P-256 certificate (examples/certs/dev.pem, key copied with mode 600), "
             "SNI `localhost`; "
             "one shared nginx backend (plain HTTP) serving 13 bytes at /small and a 1 MiB file at /1m")
    L.append("")
    L.append("## Requests per second and latency")
    L.append("")
    L.append("Median of the rounds; min-max across rounds; p50/p99 are medians of each round's wrk percentiles. "
             "CPU is the proxy's own utime+stime (all its processes and threads, from /proc) per request; "
             "for the backend row it is the backend's. wrk, the backend and the proxy share the cores, and "
             "the scheduler gives a proxy with more runnable threads a larger share of them, so req/s also "
             "reflects that share; CPU µs/req does not. Other load on the machine shows in the min-max spread.")
    L.append("")
    L.append("| scenario | target | req/s (median) | min-max | p50 ms | p99 ms | CPU µs/req | socket errors | non-2xx |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, title, *_ in SCENARIOS:
        for t in TARGETS:
            s = results.get(key, {}).get(t)
            if not s:
                L.append(f"| {title} | {LABEL[t]} | not run | | | | | | |")
                continue
            cpu = f"{s['cpu_us']:.1f}" if s["cpu_us"] is not None else "-"
            L.append(f"| {title} | {LABEL[t]} | {fmt_int(s['rps'])} | {fmt_int(s['min'])}-{fmt_int(s['max'])} | "
                     f"{fmt_ms(s['p50'])} | {fmt_ms(s['p99'])} | {cpu} | {s['errors']} | {s['non2xx']} |")
    L.append("")
    L.append("## Ratios (nexushub / other)")
    L.append("")
    L.append("req/s: above 1 means nexushub serves more. p99 and CPU: below 1 means nexushub is faster / cheaper.")
    L.append("")
    L.append("| scenario | req/s vs nginx | req/s vs HAProxy | p99 vs nginx | p99 vs HAProxy | CPU/req vs nginx | CPU/req vs HAProxy |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    chart = []
    for key, title, *_ in SCENARIOS:
        r = results.get(key, {})
        n, g, h = r.get("nexushub"), r.get("nginx"), r.get("haproxy")

        def rr(field, other):
            if not n or not other:
                return None
            return ratio(n[field], other[field])

        cells = [rr("rps", g), rr("rps", h), rr("p99", g), rr("p99", h), rr("cpu_us", g), rr("cpu_us", h)]
        L.append(f"| {title} | " + " | ".join(f"{c:.2f}" if c is not None else "-" for c in cells) + " |")
        chart.append((title, cells[0], cells[1]))
    L.append("")
    L.append("![nexushub req/s relative to nginx and HAProxy](ratios.svg)")
    L.append("")
    L.append("## Memory")
    L.append("")
    L.append("MiB of RSS summed over the proxy's processes (nginx: master and workers, so pages they share "
             "count more than once; PSS in brackets splits shared pages fairly). \"At start\": after start and "
             "the correctness checks, before any load. \"After load\": idle again after all the wrk runs, the "
             "baseline for KiB/conn. N idle connections: N TLS 1.3 connections, one request answered on each, "
             "then idle; measured 1 s after the last one opened.")
    L.append("")
    L.append("| proxy | at start | after load | " + " | ".join(f"{n:,} idle conns" for n in a.conns) + " | "
             + " | ".join(f"KiB/conn at {n:,}" for n in a.conns) + " |")
    L.append("| --- | ---: | ---: | " + " | ".join("---:" for _ in a.conns) + " | "
             + " | ".join("---:" for _ in a.conns) + " |")
    both = lambda m: f"{fmt_mib(m[0])} ({fmt_mib(m[1])})" if m else "-"  # noqa: E731
    for p in PROXIES:
        m = memory.get(p, {})
        base = m.get("after_load")
        cells = [both(m.get("idle")), both(base)]
        per = []
        for n in a.conns:
            h = m.get(n)
            if not h or h.get("rss") is None:
                cells.append("-")
                per.append("-")
                continue
            note = "" if h["ok"] == n else f" ⚠ {h['ok']:,} open, {h['failed']:,} failed"
            cells.append(both((h["rss"], h["pss"])) + note)
            per.append(f"{(h['rss'] - base[0]) / max(h['ok'], 1):.1f}" if base else "-")
        L.append(f"| {LABEL[p]} | " + " | ".join(cells + per) + " |")
    if 10000 not in a.conns:
        L.append("")
        L.append("10,000 idle connections: measured by the full run only (opening them takes about 20 s per proxy).")
    L.append("")
    L.append("## TLS and session resumption")
    L.append("")
    L.append("| proxy | negotiated (OpenSSL client) | resumes TLS 1.3 | resumes TLS 1.2 | wrk's new connections resumed (from the proxy's access log) |")
    L.append("| --- | --- | --- | --- | --- |")
    for p in PROXIES:
        t = tls.get(p, {})
        res = resumption.get(p)
        if res and res[1]:
            seen = f"{res[0]:,} of {res[1]:,} ({100 * res[0] / res[1]:.0f}%)"
        elif p == "nexushub":
            seen = "not logged by nexushub"
        else:
            seen = "-"
        yn = lambda v: "yes" if v else ("no" if v is not None else "-")  # noqa: E731
        L.append(f"| {LABEL[p]} | {t.get('version', '-')} {t.get('cipher', '')} | {yn(t.get('resume_tls13'))} | "
                 f"{yn(t.get('resume_tls12'))} | {seen} |")
    L.append("")
    L.append(ctx["resumption_note"])
    L.append("")
    L.append("## Setup")
    L.append("")
    workers = min(64, max(2, os.cpu_count() or 2))
    L.append(f"- nexushub: defaults (`workers` = one per core: {workers} here), `access_log` to a file (written by its own thread), "
             "`idle_timeout = 300`, `max_connections = 20000`, `max_connections_per_ip = 20000`; "
             "one `upstream` app for host `localhost` (and one for the WebSocket scenarios' echo app, "
             f"host `{WS_HOST}`; nginx and HAProxy have a `{WS_PATH}` route to it).")
    L.append(f"- nginx proxy: `worker_processes auto`, `worker_connections {min(20000, nofile() - 200)}`, upstream `keepalive 256`, "
             "`keepalive_requests 1000000` both sides, `proxy_http_version 1.1`, `proxy_set_header Connection \"\"`, "
             "`proxy_buffering off` with `proxy_buffer_size 16k` (the default 4 KiB halves its 1 MiB throughput), "
             "`ssl_protocols TLSv1.2 TLSv1.3` (1.22 has no TLS 1.3 by default), access log to a file with "
             "`buffer=64k flush=1s`, shared session cache + tickets.")
    L.append(f"- HAProxy: `mode http`, `http-reuse safe`, `nbthread {os.cpu_count()}`, `maxconn {min(40000, nofile() - 500)}` "
             f"with `ulimit-n {nofile()}` and `no strict-limits` (it reserves two descriptors per connection and "
             "warns; idle client connections use one), `ssl-min-ver TLSv1.2`, "
             "session cache + tickets (defaults), access log per request to an in-memory ring "
             "(HAProxy cannot write a file itself).")
    L.append("- all three add X-Forwarded-For / -Proto / -Host to the request, as nexushub always does.")
    L.append(f"- open-file limit (inherited by all): {nofile()}.")
    L.append("- backend: nginx, `worker_processes auto`, no access log, `return 200 \"Hello, world!\"` and a static 1 MiB file.")
    L.append("")
    L.append("## nexushub's logs")
    L.append("")
    st = ctx.get("nexushub_statuses", {})
    L.append("Access log statuses: " + (", ".join(f"{k}: {v:,}" for k, v in sorted(st.items())) or "none") +
             " (0 = the client closed before the answer was complete: wrk stops mid-request at the end of "
             f"every run). wrk counted {ctx.get('nexushub_wrk_total', 0):,} completed requests through nexushub "
             "(warm-ups included); the log also has the correctness checks and the idle connections' requests.")
    L.append("")
    L.append("Its stderr, by kind (wrk drops every connection at the end of a run, hence resets and broken pipes):")
    L.append("")
    for k, v in sorted(ctx.get("nexushub_log", {}).items(), key=lambda kv: -kv[1])[:15]:
        L.append(f"- {v:,} × `{k[:160]}`")
    L.append("")
    L.append("## Anomalies")
    L.append("")
    if anomalies:
        for x in anomalies:
            L.append(f"- {x}")
    else:
        L.append("- none: no wrk socket errors, no non-2xx answers, no proxy exited, no unexpected warning in "
                 "nexushub's log, every idle connection opened and stayed open.")
    L.append("")
    text = "\n".join(L)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "latest.md"), "w") as f:
        f.write(text)
    svg_chart(chart, os.path.join(outdir, "ratios.svg"), "nexushub requests/s relative to nginx and HAProxy",
              f"median of {a.rounds} rounds of {a.duration} s, wrk on loopback, {os.cpu_count()} cores "
              f"({cpu_model()}), {ctx['date']}, {a.cmdline}")
    with open(os.path.join(outdir, "latest.json"), "w") as f:
        json.dump({"results": results, "memory": {p: {str(k): v for k, v in m.items()} for p, m in memory.items()},
                   "tls": tls, "resumption": resumption, "anomalies": anomalies,
                   "date": ctx["date"], "cmdline": a.cmdline}, f, indent=1, default=str)
    return text


# ---------------------------------------------------------------- WebSocket


def run_wsbench(wsbench, cmd, url, conns, seconds, size, ca):
    """One wsbench load or bulk run: its WSJSON line as a dict."""
    argv = [wsbench, cmd, "--url", url, "--conns", str(conns), "--seconds", str(seconds), "--size", str(size),
            "--ca", ca]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"^WSJSON (\{.*\})$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise BenchError(f"wsbench failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    return json.loads(m.group(1))


def hold_tunnels(wsbench, name, root, url, n, ca, pidfile, tmp, deadline):
    """`wsbench hold` with n tunnels through url; memory of root while they idle."""
    proc = subprocess.Popen(
        [wsbench, "hold", "--url", url, "--conns", str(n), "--ca", ca, "--deadline", str(deadline)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=open(os.path.join(tmp, f"ws-hold-{name}-{n}.log"), "wb"), start_new_session=True,
    )
    with open(pidfile, "a") as f:
        f.write(f"{proc.pid}\n")
    try:
        line = read_line(proc, deadline + 30)
        parts = line.decode(errors="replace").split(" ", 4)
        if len(parts) < 4 or parts[0] != "READY":
            return {"ok": 0, "failed": n, "secs": None, "error": f"holder gave {line[:200]!r}", "rss": None,
                    "pss": None, "alive": None}
        ok, failed, secs = int(parts[1]), int(parts[2]), float(parts[3])
        time.sleep(1.0)  # let the proxy settle (buffers released)
        rss, pss = memory_kib(root) if ok else (None, None)
        proc.stdin.close()  # the holder echoes once more on each tunnel, then says how many answered
        m = re.search(rb"ALIVE (\d+)", read_line(proc, 60))
        return {"ok": ok, "failed": failed, "secs": secs, "error": parts[4].strip() if len(parts) > 4 else "",
                "rss": rss, "pss": pss, "alive": int(m.group(1)) if m else None}
    finally:
        try:
            if not proc.stdin.closed:
                proc.stdin.close()
            proc.wait(timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def read_line(proc, deadline_s):
    """One line of proc's stdout, waiting at most deadline_s (b"" if none)."""
    line, end = b"", time.monotonic() + deadline_s
    while time.monotonic() < end and not line.endswith(b"\n"):
        r, _, _ = select.select([proc.stdout], [], [], 1)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    return line


def run_websocket(a, servers, ports, ca, pidfile, tmp, dead, anomalies):
    """The WebSocket scenarios and the idle-tunnel memory: (results, memory)."""
    urls = {p: f"wss://{WS_HOST}:{ports[p]}{WS_PATH}" for p in PROXIES}
    urls["backend"] = f"ws://{WS_HOST}:{ports['ws-backend']}{WS_PATH}"
    ws_dead = set(dead)
    for t in TARGETS:
        if t in ws_dead:
            continue
        try:
            r = run_wsbench(a.wsbench, "load", urls[t], 1, 1, 64, ca)
            if r["errors"] or not r["messages"]:
                raise BenchError(r["first_error"] or "no round trip")
        except (BenchError, subprocess.TimeoutExpired) as e:
            ws_dead.add(t)
            anomalies.append(f"WebSocket: {LABEL[t]} does not tunnel ({str(e)[:300]}); its WebSocket rows are empty")
            continue
        log(f"{t}: tunnels WebSockets ({urls[t]})")
    results, memory = {}, {}
    for key, title, cmd, conns, size in WS_SCENARIOS:
        raw = {t: [] for t in TARGETS}
        for phase in ["warm-up"] + [f"round {i + 1}/{a.rounds}" for i in range(a.rounds)]:
            for t in TARGETS:
                if t in ws_dead or (t == "backend" and phase == "warm-up"):
                    continue
                server = servers["ws-backend" if t == "backend" else t]
                secs = a.warmup if phase == "warm-up" else a.duration
                before = cpu_ticks(server.pid)
                try:
                    r = run_wsbench(a.wsbench, cmd, urls[t], conns, secs, size, ca)
                except (BenchError, subprocess.TimeoutExpired) as e:
                    anomalies.append(f"{title}, {LABEL[t]}, {phase}: {e}")
                    continue
                after = cpu_ticks(server.pid)
                if not server.alive():
                    ws_dead.add(t)
                    anomalies.append(f"{LABEL[t]} exited during \"{title}\" ({phase}): {server.log_text()[-600:]!r}")
                    continue
                r["cpu_us"] = (after - before) / CLK_TCK * 1e6 / r["messages"] if r["messages"] else None
                if r["errors"] or r["connect_errors"]:
                    anomalies.append(f"{title}, {LABEL[t]}, {phase}: {r['messages']:,} round trips, "
                                     f"{r['errors']} errors ({r['connect_errors']} at connect), first: "
                                     f"{r['first_error'][:200]}")
                if phase != "warm-up":
                    raw[t].append(r)
                log(f"{key:7} {phase:11} {t:8} {r['msgs_per_s']:9,.0f} msg/s {r['mib_per_s']:8,.1f} MiB/s  "
                    f"p99 {r['p99_us'] / 1000:7.2f} ms  cpu {r['cpu_us'] or 0:7.1f} us/msg  err {r['errors']}")
        results[key] = {t: ws_summarize(raw[t]) for t in TARGETS}
    for p in PROXIES:
        if p in ws_dead:
            continue
        memory[p] = {"before": memory_kib(servers[p].pid)}
        for n in a.ws_idle:
            log(f"memory: {p} with {n:,} idle WebSocket tunnels")
            h = hold_tunnels(a.wsbench, p, servers[p].pid, urls[p], n, ca, pidfile, tmp, a.hold_deadline)
            memory[p][n] = h
            if h["ok"] != n:
                anomalies.append(f"{LABEL[p]}: {h['ok']:,} of {n:,} idle tunnels opened, {h['failed']:,} failed "
                                 f"(first: {h['error'] or '?'})")
            if h["alive"] is not None and h["alive"] != h["ok"]:
                anomalies.append(f"{LABEL[p]}: only {h['alive']:,} of {h['ok']:,} idle tunnels still echoed when "
                                 "released")
            log(f"memory: {p} {n:,} tunnels: {h['ok']:,} open in {h['secs']}s, RSS {fmt_mib(h['rss'])} MiB, "
                f"PSS {fmt_mib(h['pss'])} MiB, {h['alive']} still echoing after")
            if not servers[p].alive():
                anomalies.append(f"{LABEL[p]} exited while holding {n:,} tunnels: {servers[p].log_text()[-600:]!r}")
                break
            time.sleep(1.0)
    return results, memory


def ws_summarize(runs):
    """Medians and ranges over the measured rounds of one WebSocket scenario and target."""
    if not runs:
        return None
    cpu = [r["cpu_us"] for r in runs if r.get("cpu_us") is not None]
    return {
        "msgs_per_s": statistics.median(r["msgs_per_s"] for r in runs),
        "min": min(r["msgs_per_s"] for r in runs),
        "max": max(r["msgs_per_s"] for r in runs),
        "mib_per_s": statistics.median(r["mib_per_s"] for r in runs),
        "p50": statistics.median(r["p50_us"] for r in runs),
        "p99": statistics.median(r["p99_us"] for r in runs),
        "p99_range": (min(r["p99_us"] for r in runs), max(r["p99_us"] for r in runs)),
        "cpu_us": statistics.median(cpu) if cpu else None,
        "errors": sum(r["errors"] for r in runs),
        "messages": sum(r["messages"] for r in runs),
        "rounds": len(runs),
    }


def write_ws_report(ctx, results, memory, anomalies, outdir):
    """benches/results/websocket.md and websocket.json."""
    a = ctx["args"]
    L = ["# WebSocket: nexushub vs nginx vs HAProxy", ""]
    L.append(f"- date: {ctx['date']}")
    L.append(f"- machine: `nproc` = {os.cpu_count()}, CPU: {cpu_model()}, kernel {platform.release()}, "
             f"load average at start {ctx['loadavg']}")
    L.append(f"- command: `{a.cmdline}`" + (" (quick mode)" if a.quick else ""))
    L.append(f"- nexushub: {ctx['nexushub_rev']}; {ctx['versions']['nginx']}; {ctx['versions']['haproxy']}")
    L.append(f"- client: `wsbench` (benches/wsbench.rs; rustls, a thread per tunnel), {a.duration} s per run, "
             f"{a.rounds} measured rounds after one {a.warmup} s warm-up per target, targets alternating; each "
             "tunnel sends a binary message, waits for its echo, checks it, sends the next; tunnels open before "
             "the clock starts")
    L.append(f"- backend: `wsbench echo-server` (plain HTTP, a thread per connection); proxies: TLS 1.3, "
             f"`wss://{WS_HOST}:PORT{WS_PATH}`; the backend row is `ws://` straight to the echo server")
    L.append("")
    L.append("## Round trips")
    L.append("")
    L.append("Median of the rounds; min-max of msg/s across rounds; p50/p99 are medians of each round's; MiB/s is "
             "message payload echoed (each byte crosses the proxy twice); CPU is the proxy's own utime+stime "
             "per round trip (for the backend row the echo server's).")
    L.append("")
    L.append("| scenario | target | round trips/s | min-max | MiB/s | p50 ms | p99 ms [rounds] | CPU µs/msg | errors |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, title, *_ in WS_SCENARIOS:
        for t in TARGETS:
            r = results.get(key, {}).get(t)
            if not r:
                L.append(f"| {title} | {LABEL[t]} | not run | | | | | | |")
                continue
            cpu = f"{r['cpu_us']:.1f}" if r["cpu_us"] is not None else "-"
            lo, hi = r["p99_range"]
            L.append(f"| {title} | {LABEL[t]} | {fmt_int(r['msgs_per_s'])} | {fmt_int(r['min'])}-{fmt_int(r['max'])} "
                     f"| {r['mib_per_s']:,.1f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} [{fmt_ms(lo)}-{fmt_ms(hi)}] "
                     f"| {cpu} | {r['errors']} |")
    L.append("")
    L.append("## Memory with idle tunnels")
    L.append("")
    L.append("MiB of RSS (PSS in brackets) summed over the proxy's processes: before (after the load runs) and "
             "with N tunnels open and idle, each having echoed one message, measured 1 s after the last opened; "
             "KiB per tunnel over the before figure. After the measurement every tunnel echoes once more "
             '("still echoing").')
    L.append("")
    L.append("| proxy | before | " + " | ".join(f"{n:,} idle tunnels | KiB/tunnel | still echoing" for n in a.ws_idle)
             + " |")
    L.append("| --- | ---: | " + " | ".join("---: | ---: | ---:" for _ in a.ws_idle) + " |")
    both = lambda m: f"{fmt_mib(m[0])} ({fmt_mib(m[1])})" if m and m[0] is not None else "-"  # noqa: E731
    for p in PROXIES:
        m = memory.get(p)
        if not m:
            L.append(f"| {LABEL[p]} | not run | " + " | ".join("- | - | -" for _ in a.ws_idle) + " |")
            continue
        cells = [both(m["before"])]
        for n in a.ws_idle:
            h = m.get(n)
            if not h or h.get("rss") is None:
                cells += ["-", "-", "-"]
                continue
            note = "" if h["ok"] == n else f" ⚠ {h['ok']:,} open"
            cells += [both((h["rss"], h["pss"])) + note, f"{(h['rss'] - m['before'][0]) / max(h['ok'], 1):.1f}",
                      f"{h['alive']:,}" if h["alive"] is not None else "?"]
        L.append(f"| {LABEL[p]} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## Setup")
    L.append("")
    L.append(f"- nexushub: the benchmark config of `latest.md` plus `[app ws]` (`hosts = {WS_HOST}`, `upstream` = "
             "the echo backend, `health = /`); `tunnel_idle_timeout` default (600 s).")
    L.append(f"- nginx: `location {WS_PATH}` with `proxy_http_version 1.1`, `proxy_set_header Upgrade $http_upgrade`, "
             "`proxy_set_header Connection \"upgrade\"`, `proxy_read_timeout`/`proxy_send_timeout 600s`, "
             "`proxy_buffer_size 16k`.")
    L.append(f"- HAProxy: `mode http` (tunnels upgrades by itself), `use_backend ws if {{ path_beg {WS_PATH} }}`, "
             "`timeout tunnel 600s`.")
    L.append("")
    L.append("## Anomalies")
    L.append("")
    ws_anoms = [x for x in anomalies if "WebSocket" in x or "tunnel" in x]
    L += [f"- {x}" for x in ws_anoms] or ["- none"]
    L.append("")
    text = "\n".join(L)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "websocket.md"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "websocket.json"), "w") as f:
        json.dump({"results": results, "memory": {p: {str(k): v for k, v in m.items()} for p, m in memory.items()},
                   "anomalies": ws_anoms, "date": ctx["date"], "cmdline": a.cmdline}, f, indent=1, default=str)
    return text


# ---------------------------------------------------------------- run


def cmd_run(a):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp, pidfile = a.tmp, a.pidfile
    os.chmod(tmp, 0o755)
    servers = {}
    anomalies = []
    ctx = {"args": a, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    with open("/proc/loadavg") as f:
        ctx["loadavg"] = " ".join(f.read().split()[:3])
    ctx["versions"] = {
        "nginx": first_line(["nginx", "-v"]),
        "haproxy": re.sub(r" - https?://\S+", "", first_line(["haproxy", "-v"])),
        "wrk": re.sub(r" Copyright.*", "", first_line(["wrk", "-v"])),
    }
    rev = subprocess.run(["git", "-C", a.repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", a.repo, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True)
    ctx["nexushub_rev"] = (rev.stdout.strip() or "?") + (" (+ uncommitted changes in src/)" if dirty.stdout.strip() else "")
    if a.custom_bin:
        ctx["nexushub_rev"] = f"binary {a.bin} (NEXUSHUB_BIN; repo at {ctx['nexushub_rev']})"

    # Copies with a private key mode: a checkout leaves dev.key group-readable,
    # which nexushub rightly warns about.
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    for src, dst in (("dev.pem", cert), ("dev.key", key)):
        with open(os.path.join(a.certs, src), "rb") as f:
            data = f.read()
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    ca = os.path.join(a.certs, "ca.pem")
    lua = os.path.join(tmp, "done.lua")
    write(lua, WRK_LUA)
    try:
        # --- backend
        bd = os.path.join(tmp, "backend")
        os.makedirs(os.path.join(bd, "www"))
        os.makedirs(os.path.join(bd, "tmp"))
        big = os.urandom(BIG_SIZE)
        big_sha = hashlib.sha256(big).hexdigest()
        with open(os.path.join(bd, "www", "1m"), "wb") as f:
            f.write(big)
        ports = {t: free_port() for t in TARGETS + ["ws-backend"]}
        write(os.path.join(bd, "nginx.conf"), nginx_backend_conf(bd, ports["backend"]))
        servers["backend"] = Server("backend nginx", ["nginx", "-p", bd, "-e", os.path.join(bd, "error.log"),
                                                     "-c", os.path.join(bd, "nginx.conf")],
                                    os.path.join(bd, "out.log"), pidfile)
        wait_port(servers["backend"], ports["backend"])
        status, _, body = plain_get(ports["backend"], "/small")
        if status != 200 or body != SMALL_BODY:
            raise BenchError(f"backend answers {status} {body[:100]!r}")
        # The WebSocket echo backend beside it.
        wsp = ports["ws-backend"]
        servers["ws-backend"] = Server("ws echo backend", [a.wsbench, "echo-server", "--listen", f"127.0.0.1:{wsp}"],
                                       os.path.join(tmp, "ws-backend.log"), pidfile)
        wait_port(servers["ws-backend"], wsp)

        # --- proxies
        nd = os.path.join(tmp, "nexushub")
        os.makedirs(nd)
        conf = os.path.join(nd, "nexushub.conf")
        write(conf, nexushub_conf(nd, ports["nexushub"], ports["backend"], cert, key, wsp))
        chk = subprocess.run([a.bin, "check", "--config", conf], capture_output=True, text=True, timeout=30)
        if chk.returncode != 0 and 'unknown key "max_connections_per_ip"' in chk.stdout + chk.stderr:
            # An older nexushub without the per-address cap: nothing to raise.
            write(conf, re.sub(r"(?m)^max_connections_per_ip.*\n", "", open(conf).read()))
            chk = subprocess.run([a.bin, "check", "--config", conf], capture_output=True, text=True, timeout=30)
        if chk.returncode != 0:
            raise BenchError(f"nexushub check rejects the config: {(chk.stdout + chk.stderr).strip()}")
        servers["nexushub"] = Server("nexushub", [a.bin, "run", "--config", conf],
                                     os.path.join(nd, "stderr.log"), pidfile)
        gd = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(gd, "tmp"))
        write(os.path.join(gd, "nginx.conf"), nginx_proxy_conf(gd, ports["nginx"], ports["backend"], cert, key, wsp))
        servers["nginx"] = Server("nginx proxy", ["nginx", "-p", gd, "-e", os.path.join(gd, "error.log"),
                                                  "-c", os.path.join(gd, "nginx.conf")],
                                  os.path.join(gd, "out.log"), pidfile)
        hd = os.path.join(tmp, "haproxy")
        os.makedirs(hd)
        pem = os.path.join(hd, "cert.pem")
        with open(pem, "w") as f, open(cert) as c, open(key) as k:
            f.write(c.read() + k.read())
        write(os.path.join(hd, "haproxy.cfg"), haproxy_conf(hd, ports["haproxy"], ports["backend"], pem, os.cpu_count(), wsp))
        servers["haproxy"] = Server("haproxy", ["haproxy", "-db", "-f", os.path.join(hd, "haproxy.cfg")],
                                    os.path.join(hd, "out.log"), pidfile)
        wait_log(servers["nexushub"], r"listening on")
        for p in ("nginx", "haproxy"):
            wait_port(servers[p], ports[p])

        tls = {}
        for p in PROXIES:
            tls[p] = sanity(p, ports[p], ca, big_sha)
            log(f"{p}: answers correctly on 127.0.0.1:{ports[p]} ({tls[p]['version']}, {tls[p]['cipher']}, "
                f"resumes 1.3: {tls[p]['resume_tls13']}, 1.2: {tls[p]['resume_tls12']})")
        time.sleep(0.5)
        memory = {p: {"idle": memory_kib(servers[p].pid)} for p in PROXIES}

        # --- load scenarios
        urls = {p: f"https://{HOST}:{ports[p]}" for p in PROXIES}
        urls["backend"] = f"http://{HOST}:{ports['backend']}"
        results, raw = {}, {}
        dead = set()
        wrk_total = {t: 0 for t in TARGETS}
        http = a.only != "ws"
        for key, title, path, conns, close in SCENARIOS if http else []:
            raw[key] = {t: [] for t in TARGETS}
            for phase in ["warm-up"] + [f"round {i + 1}/{a.rounds}" for i in range(a.rounds)]:
                for t in TARGETS:
                    if t in dead or (t == "backend" and phase == "warm-up"):  # no TLS, nothing to warm
                        continue
                    secs = a.warmup if phase == "warm-up" else a.duration
                    before = cpu_ticks(servers[t].pid)
                    try:
                        r = run_wrk(urls[t] + path, conns, secs, close, lua)
                    except (BenchError, subprocess.TimeoutExpired) as e:
                        anomalies.append(f"{title}, {LABEL[t]}, {phase}: {e}")
                        r = None
                    after = cpu_ticks(servers[t].pid)
                    if not servers[t].alive():
                        dead.add(t)
                        anomalies.append(f"{LABEL[t]} exited during \"{title}\" ({phase}), code "
                                         f"{servers[t].proc.returncode}; last output: "
                                         f"{servers[t].log_text()[-600:]!r}")
                        continue
                    if r is None:
                        continue
                    r["cpu_us"] = (after - before) / CLK_TCK * 1e6 / r["requests"] if r["requests"] else None
                    errs = r["connect"] + r["read"] + r["write"] + r["timeout"]
                    if errs or r["status"]:
                        anomalies.append(f"{title}, {LABEL[t]}, {phase}: {r['requests']:,} requests, socket errors "
                                         f"connect {r['connect']} read {r['read']} write {r['write']} timeout "
                                         f"{r['timeout']}, non-2xx {r['status']}")
                    wrk_total[t] += r["requests"]
                    if phase != "warm-up":
                        raw[key][t].append(r)
                    log(f"{key:6} {phase:11} {t:8} {r['rps']:10,.0f} req/s  p99 {r['p99'] / 1000:7.2f} ms  "
                        f"cpu {r['cpu_us'] or 0:6.1f} us/req  err {errs} non2xx {r['status']}")
            results[key] = {t: summarize(raw[key][t]) for t in TARGETS}

        # --- session resumption as the proxies saw wrk's new connections
        resumption = {"nginx": nginx_resumption(servers["nginx"], os.path.join(gd, "access.log")),
                      "haproxy": haproxy_resumption(os.path.join(hd, "admin.sock"))}
        seen = [v for v in resumption.values() if v and v[1]]
        if seen:
            rate = sum(v[0] for v in seen) / sum(v[1] for v in seen)
            if rate > 0.9:
                verdict = (f"**wrk resumes TLS sessions**: {100 * rate:.0f}% of its new connections were resumed "
                           "where the proxy logs it (nginx `$ssl_session_reused`, HAProxy `ssl_fc_is_resumed`). "
                           "All three proxies accept resumption (table above), so the new-connection scenario "
                           "measures mostly resumed handshakes on all sides.")
            elif rate < 0.1:
                verdict = (f"**wrk does not resume TLS sessions** ({100 * rate:.0f}% resumed where logged): every "
                           "connection in the new-connection scenario is a full handshake on all sides.")
            else:
                verdict = (f"wrk resumed {100 * rate:.0f}% of its new connections where logged: a mix of full and "
                           "resumed handshakes.")
        else:
            verdict = "The resumption rate of wrk's connections could not be read from the proxies' logs."
        ctx["resumption_note"] = verdict + " nexushub does not log resumption; it resumes for an OpenSSL client (above)."

        # --- memory with idle connections
        for p in PROXIES:
            memory[p]["after_load"] = memory_kib(servers[p].pid)
        for n in a.conns if http else []:
            for p in PROXIES:
                if p in dead:
                    continue
                log(f"memory: {p} with {n:,} idle TLS connections")
                h = hold_connections(p, servers[p].pid, ports[p], n, pidfile, tmp, a.hold_deadline)
                memory[p][n] = h
                if h["alive"] is not None and h["alive"] != h["ok"]:
                    anomalies.append(f"{LABEL[p]}: only {h['alive']:,} of {h['ok']:,} idle connections were still "
                                     "open when released")
                if h["ok"] != n:
                    anomalies.append(f"{LABEL[p]}: {h['ok']:,} of {n:,} idle connections opened, {h['failed']:,} "
                                     f"failed (first: {h['error'] or '?'})")
                log(f"memory: {p} {n:,} conns: {h['ok']:,} open in {h['secs']}s, RSS "
                    f"{fmt_mib(h['rss'])} MiB, PSS {fmt_mib(h['pss'])} MiB")
                if not servers[p].alive():
                    dead.add(p)
                    anomalies.append(f"{LABEL[p]} exited while holding {n:,} idle connections: "
                                     f"{servers[p].log_text()[-600:]!r}")
                time.sleep(1.0)  # let the proxy close the previous holder's connections

        # --- WebSocket tunnels
        ws_results, ws_memory = run_websocket(a, servers, ports, ca, pidfile, tmp, dead, anomalies)

        # --- nexushub's own log and access log
        ctx["nexushub_log"], bad = nexushub_log_summary(servers["nexushub"].log_text())
        if bad:
            anomalies.append(f"nexushub logged {len(bad)} unexpected warning/error lines, e.g. " +
                             "; ".join(repr(x[:240]) for x in bad[:5]))
        servers["nexushub"].stop()  # flushes its access log
        ctx["nexushub_statuses"] = access_statuses(os.path.join(nd, "access.log"))
        ctx["nexushub_wrk_total"] = wrk_total["nexushub"]
        logged = sum(ctx["nexushub_statuses"].values())
        if logged < wrk_total["nexushub"]:
            anomalies.append(f"nexushub's access log has {logged:,} lines, fewer than the {wrk_total['nexushub']:,} "
                             "requests wrk completed through it")
        odd = {k: v for k, v in ctx["nexushub_statuses"].items() if k not in ("200", "0", "101")}
        if odd:
            anomalies.append(f"nexushub's access log has statuses other than 200: {odd}")
        for p, srv in servers.items():
            if p in ("nginx", "backend"):
                err = os.path.join(tmp, "nginx" if p == "nginx" else "backend", "error.log")
                try:
                    with open(err) as f:
                        lines = [x for x in f.read().splitlines() if "[error]" in x or "[alert]" in x or "[crit]" in x]
                except OSError:
                    lines = []
                if lines:
                    anomalies.append(f"{srv.name} error.log: {len(lines)} error lines, e.g. {lines[0][:200]!r}")

        if http:
            print(write_report(ctx, results, memory, tls, resumption, anomalies, a.out))
            log(f"wrote {a.out}/latest.md, ratios.svg, latest.json")
        print(write_ws_report(ctx, ws_results, ws_memory, anomalies, a.out))
        log(f"wrote {a.out}/websocket.md, websocket.json")
        return 0
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        for s in servers.values():
            s.stop()
        # Everything we started is gone: the exit trap has nothing left to do.
        open(pidfile, "w").close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--bin", required=True)
    r.add_argument("--repo", required=True)
    r.add_argument("--certs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--tmp", required=True)
    r.add_argument("--pidfile", required=True)
    r.add_argument("--cmdline", default="benches/compare")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--custom-bin", action="store_true")
    r.add_argument("--rounds", type=int, required=True)
    r.add_argument("--duration", type=int, required=True)
    r.add_argument("--warmup", type=int, required=True)
    r.add_argument("--conns", type=lambda s: [int(x) for x in s.split(",") if x], default=[1000, 10000])
    r.add_argument("--hold-deadline", type=int, default=120)
    r.add_argument("--wsbench", required=True, help="target/release/examples/wsbench")
    r.add_argument("--only", choices=["ws"], help="ws: the WebSocket scenarios only")
    r.add_argument("--ws-idle", type=lambda s: [int(x) for x in s.split(",") if x], default=[10000])
    h = sub.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--n", type=int, required=True)
    h.add_argument("--deadline", type=int, default=120)
    a = ap.parse_args()
    if a.cmd == "hold":
        return cmd_hold(a)
    if a.rounds < 1 or a.rounds > 50 or a.duration < 1 or a.duration > 120 or a.warmup < 1 or a.warmup > 60:
        ap.error("rounds 1..50, duration 1..120 s, warmup 1..60 s")
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
