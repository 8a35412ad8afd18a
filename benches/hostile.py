#!/usr/bin/env python3
"""The helper behind benches/hostile: nexushub under slow and flooding clients.

benches/hostile installs slowhttptest, builds nexushub and raises the open-file
limit; this file does the rest with the standard library only:

  run    start nexushub with every [proxy] key at its default (so one worker
         per core, unless --workers) in front of a `nexushub whoami` app that it
         runs itself, on 127.0.0.1; measure a normal client alone (baseline), then
         during a flood of idle TLS connections from 127.0.0.1, then during
         slowhttptest's slowloris (-H), slow body (-B) and slow read (-X) attacks;
         write benches/results/hostile.md (also printed).
  probe  the normal client: from a given source address, one HTTPS GET /hello on
         a fresh TCP and TLS connection every INTERVAL seconds until its stdin
         closes; one line per request (start time, seconds, outcome).
  flood  open up to N TLS connections from one source address (handshake only,
         then idle), print READY, idle until stdin closes, print ALIVE with how
         many were still open.

The attacks are bounded in time (slowhttptest's own -l, and a kill after a
deadline), target 127.0.0.1 only, and every process started here gets its own
process group, recorded in a pid file so that benches/hostile's exit trap can
end them even if this helper is killed.
"""

import argparse
import datetime
import os
import platform
import re
import resource
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HOST = "localhost"  # the app's host name; the dev certificate lists it
TARGET_IP = "127.0.0.1"  # where nexushub listens and the attacks come from
OTHER_IP = "127.0.0.2"  # the normal client's source address
HELLO = b"Hello, world!"
# Longest the normal client waits for one answer; above nexushub's own 10 s
# handshake and head deadlines, so that what it does at those shows.
PROBE_TIMEOUT = 15.0
# A normal client's request taking longer than this is called out in the report.
SLOW_MS = 1000.0

# (key, title, slowhttptest mode flag, path, extra slowhttptest options)
# slowloris: a header line of up to 2x24 random bytes every 5 s: a per-read
#   timeout of 10 s would never fire; only a total head deadline ends it.
# slow body: a POST declaring 1 MiB, then up to ~64 random bytes every 5 s
#   (~13 B/s, far below min_data_rate).
# slow read: GET a 64 MiB answer (far more than the few MB that the loopback
#   socket buffers absorb), advertise a 512-1024 byte TCP window and read 32
#   bytes every 5 s (over TLS, OpenSSL pulls a whole record of up to 16 KiB at
#   a time, so the bytes leaving nexushub's socket run faster than that).
ATTACKS = [
    ("slowloris", "slowloris (slow headers)", "-H", "/hello", ["-i", "5", "-x", "24"]),
    ("slowbody", "slow body (R-U-Dead-Yet)", "-B", "/hello", ["-i", "5", "-x", "32", "-s", "1048576"]),
    ("slowread", "slow read", "-X", "/bytes/67108864", ["-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "1"]),
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BenchError(Exception):
    """A failure that ends the run with a one-line message."""


T0 = time.monotonic()


def log(msg):
    """Progress on stderr, timestamped from the start of the run."""
    sys.stderr.write(f"[{time.monotonic() - T0:6.1f}s] {msg}\n")
    sys.stderr.flush()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- processes


class Proc:
    """A process we started in its own process group, its output in a file."""

    def __init__(self, name, argv, logpath, pidfile, stdin=subprocess.DEVNULL, stdout=None):
        self.name = name
        self.logpath = logpath
        self.out = open(logpath, "ab")
        self.proc = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout if stdout is not None else self.out, stderr=self.out,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        with open(pidfile, "a") as f:
            f.write(f"{self.pid}\n")

    def alive(self):
        return self.proc.poll() is None

    def log_text(self, start=0):
        try:
            with open(self.logpath, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.logpath)
        except OSError:
            return 0

    def stop(self, grace=10):
        """TERM the group, wait up to `grace` s, then KILL what is left of it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
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
    with socket.socket() as s:
        s.bind((TARGET_IP, 0))
        return s.getsockname()[1]


def wait_log(server, pattern, deadline_s=30):
    """Until the server's output matches pattern; fails if it dies first."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if re.search(pattern, server.log_text()):
            return
        if not server.alive():
            raise BenchError(f"{server.name} exited at start:\n{server.log_text()[-2000:]}")
        time.sleep(0.05)
    raise BenchError(f"{server.name}: no {pattern!r} in its log after {deadline_s}s")


def vm_rss_kib(pid):
    """VmRSS of one process (nexushub itself, not its app), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def established(port, remote_ip=None):
    """Server-side ESTABLISHED TCP sockets on 127.0.0.1:port (from /proc/net/tcp),
    optionally only those whose peer is remote_ip: the connections nexushub holds."""
    want_local = f"0100007F:{port:04X}"
    want_remote = None
    if remote_ip:
        want_remote = "".join(f"{int(x):02X}" for x in reversed(remote_ip.split(".")))
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) < 4 or parts[1] != want_local or parts[3] != "01":
                    continue
                if want_remote and parts[2].split(":")[0] != want_remote:
                    continue
                n += 1
    except OSError:
        return None
    return n


def wait_drained(port, deadline_s):
    """Until nexushub holds no client connection (or the deadline): returns the count left."""
    end = time.monotonic() + deadline_s
    left = established(port)
    while left and time.monotonic() < end:
        time.sleep(0.5)
        left = established(port)
    return left


# ---------------------------------------------------------------- probe


def client_ctx(ca):
    ctx = ssl.create_default_context(cafile=ca)
    # A fresh full handshake every time: no session reuse across requests.
    return ctx


def one_request(port, source, ctx, path="/hello"):
    """One GET on a fresh TCP and TLS connection: None if all went well, else why not."""
    deadline = time.monotonic() + PROBE_TIMEOUT

    def left():
        r = deadline - time.monotonic()
        if r <= 0:
            raise socket.timeout("timed out")
        return r

    raw = socket.create_connection((TARGET_IP, port), timeout=PROBE_TIMEOUT, source_address=(source, 0))
    try:
        raw.settimeout(left())
        s = ctx.wrap_socket(raw, server_hostname=HOST)
    except BaseException:
        raw.close()
        raise
    with s:
        s.settimeout(left())
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: hostile-probe\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while True:
            s.settimeout(left())
            try:
                chunk = s.recv(65536)
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            if len(buf) > 1 << 20:
                return "answer too long"
        head, _, body = buf.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode("latin-1", "replace") if head.count(b" ") >= 1 else "none"
        if not buf:
            return "closed without an answer"
        if status != "200":
            return f"status {status}"
        if body != HELLO:
            return f"body {body[:40]!r}"
    return None


def classify(e):
    """A short, stable name for a probe failure."""
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ssl.SSLError):
        return f"TLS: {e.reason or e}"
    if isinstance(e, (BrokenPipeError, ConnectionAbortedError)):
        return "connection aborted"
    if isinstance(e, OSError):
        return f"{type(e).__name__}: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def cmd_probe(a):
    """One request every a.interval s (closed loop) until stdin closes or a.max_seconds pass."""
    ctx = client_ctx(a.ca)
    stop = threading.Event()

    def watch_stdin():
        try:
            sys.stdin.read()
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    end = time.monotonic() + a.max_seconds
    out = open(a.out, "w", buffering=1)
    next_start = time.monotonic()
    while not stop.is_set() and time.monotonic() < end:
        now = time.monotonic()
        if now < next_start:
            stop.wait(next_start - now)
            if stop.is_set():
                break
        next_start = max(next_start + a.interval, time.monotonic())
        wall = time.time()
        t = time.monotonic()
        try:
            why = one_request(a.port, a.source, ctx)
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            why = classify(e)
        took = time.monotonic() - t
        out.write(f"{wall:.4f} {took:.6f} {'ok' if why is None else 'fail'} {why or ''}\n")
    out.close()
    return 0


def read_probe(path, since=None, until=None):
    """The probe lines that started in [since, until): (latency s, failure or None)."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 3)
                if len(parts) < 3:
                    continue
                wall, took, outcome = float(parts[0]), float(parts[1]), parts[2]
                if (since is not None and wall < since) or (until is not None and wall >= until):
                    continue
                rows.append((took, None if outcome == "ok" else (parts[3] if len(parts) > 3 else "?")))
    except OSError:
        pass
    return rows


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def latency_summary(rows):
    ok = sorted(t for t, why in rows if why is None)
    fails = {}
    for _, why in rows:
        if why is not None:
            fails[why] = fails.get(why, 0) + 1
    return {
        "requests": len(rows),
        "ok": len(ok),
        "failed": len(rows) - len(ok),
        "p50": pct(ok, 50),
        "p99": pct(ok, 99),
        "max": ok[-1] if ok else None,
        "longest": max((t for t, _ in rows), default=None),  # failures included
        "slow": sum(1 for t in ok if t * 1000 > SLOW_MS),
        "fails": fails,
    }


class Probe:
    """The normal client running as its own process."""

    def __init__(self, a, port, name):
        self.path = os.path.join(a.tmp, f"probe-{name}.txt")
        self.proc = Proc(
            f"probe {name}",
            [sys.executable, os.path.abspath(__file__), "probe", "--port", str(port), "--source", OTHER_IP,
             "--interval", str(a.interval), "--ca", a.ca, "--out", self.path, "--max-seconds", "600"],
            os.path.join(a.tmp, f"probe-{name}.log"), a.pidfile, stdin=subprocess.PIPE,
        )

    def finish(self):
        """Asks it to stop after its request in flight; waits for that."""
        try:
            self.proc.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.proc.wait(timeout=PROBE_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            pass
        self.proc.stop(grace=2)
        err = self.proc.log_text().strip()
        if err:
            raise BenchError(f"the normal client failed: {err[-1000:]}")


# ---------------------------------------------------------------- flood


def cmd_flood(a):
    """Open up to a.n TLS connections from a.source, then idle until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    kept, errors = [], {}
    lock = threading.Lock()
    deadline = time.monotonic() + a.deadline

    def one(_):
        if time.monotonic() > deadline:
            with lock:
                errors["gave up at the deadline"] = errors.get("gave up at the deadline", 0) + 1
            return
        try:
            raw = socket.create_connection((TARGET_IP, a.port), timeout=20, source_address=(a.source, 0))
            try:
                s = ctx.wrap_socket(raw, server_hostname=HOST)
            except BaseException:
                raw.close()
                raise
            with lock:
                kept.append(s)
        except Exception as e:  # noqa: BLE001 - counted by kind
            why = classify(e)
            with lock:
                errors[why] = errors.get(why, 0) + 1

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=a.threads) as ex:
        list(ex.map(one, range(a.n)))
    took = time.monotonic() - start
    summary = "; ".join(f"{v} {k}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
    print(f"READY {len(kept)} {sum(errors.values())} {took:.1f} {summary}", flush=True)
    sys.stdin.read()  # idle until the parent closes our stdin
    alive = 0
    for s in kept:
        try:
            s.setblocking(False)
            try:
                alive += 1 if s.recv(1) else 0  # a byte would be odd, but the socket is open
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


def read_line(proc, want, deadline_s):
    """Reads proc's stdout until a line starting with `want` (or the deadline)."""
    buf, end = b"", time.monotonic() + deadline_s
    while time.monotonic() < end:
        if re.search(rb"(^|\n)" + want.encode() + rb"[^\n]*\n", buf):
            break
        r, _, _ = select.select([proc.stdout], [], [], 1)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    m = re.search(rb"(^|\n)(" + want.encode() + rb"[^\n]*)\n", buf)
    return m.group(2).decode(errors="replace") if m else None


# ---------------------------------------------------------------- slowhttptest


def parse_status_block(text):
    """The last status block and the exit status of one slowhttptest run."""
    text = ANSI.sub("", text)
    out = {}
    blocks = text.split("slow HTTP test status on")
    if len(blocks) > 1:
        last = blocks[-1]
        for key in ("initializing", "pending", "connected", "error", "closed"):
            m = re.search(rf"^{key}:\s+(\d+)", last, re.M)
            if m:
                out[key] = int(m.group(1))
        m = re.search(r"^service available:\s+(\w+)", last, re.M)
        if m:
            out["available"] = m.group(1)
        m = re.match(r"\s*(\d+)", last)
        if m:
            out["second"] = int(m.group(1))
    m = re.search(r"Exit status:\s*(.+)", text)
    out["exit"] = m.group(1).strip() if m else "?"
    m = re.search(r"Test ended on (\d+)", text)
    out["ended"] = int(m.group(1)) if m else None
    return out


def parse_csv(path):
    """Rows (seconds, closed, pending, connected, available) of slowhttptest's -g CSV."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) == 5 and parts[0].isdigit():
                    rows.append(tuple(int(x) for x in parts))
    except (OSError, ValueError):
        pass
    return rows


def run_attack(a, port, key, flag, path, extra, seconds):
    """slowhttptest rounds back to back until `seconds` have passed.

    slowhttptest does not reopen a connection the server closed, and ends early
    once none is left; nexushub's deadlines close them after ~10 s, so one round
    would leave most of the window without an attack. Each new round opens
    a.conns connections afresh."""
    rounds = []
    end = time.monotonic() + seconds
    i = 0
    while True:
        left = int(end - time.monotonic())
        if left < 3:
            break
        i += 1
        prefix = os.path.join(a.tmp, f"{key}-{i}")
        argv = ["slowhttptest", flag, "-c", str(a.conns), "-r", str(a.rate), "-l", str(left), "-p", "3",
                *extra, "-u", f"https://{TARGET_IP}:{port}{path}", "-g", "-o", prefix]
        out = prefix + ".out"
        p = Proc(f"slowhttptest {key}", argv, out, a.pidfile)
        try:
            p.proc.wait(timeout=left + 20)
        except subprocess.TimeoutExpired:
            log(f"{key}: slowhttptest still running {left + 20} s after it should have ended: killed")
        p.stop(grace=2)
        status = parse_status_block(p.log_text())
        csv = parse_csv(prefix + ".csv")
        rounds.append({"argv": argv, "status": status, "csv": csv, "rc": p.proc.returncode})
        log(f"{key}: round {i}: {status.get('exit', '?')} (connected at most "
            f"{max((r[3] for r in csv), default=0)}, final {status})")
    return rounds


def attack_summary(rounds):
    csv = [r for x in rounds for r in x["csv"]]
    last = rounds[-1]["status"] if rounds else {}
    return {
        "rounds": len(rounds),
        "peak_connected": max((r[3] for r in csv), default=0),
        "peak_pending": max((r[2] for r in csv), default=0),
        "closed": sum(x["status"].get("closed", 0) for x in rounds),
        "errors": sum(x["status"].get("error", 0) for x in rounds),
        "seconds": len(csv),
        "unavailable": sum(1 for r in csv if r[4] == 0),
        "last": last,
        "exits": [x["status"].get("exit", "?") for x in rounds],
    }


# ---------------------------------------------------------------- nexushub's log


def log_kinds(text):
    """Counts of nexushub's stderr lines by kind, addresses and paths blanked."""
    kinds = {}
    for line in text.splitlines():
        m = re.match(r"\S+ \[(\w+)\] (.*)", line)
        if not m:
            if line.strip():
                kinds[f"(unparsed) {line[:120]}"] = kinds.get(f"(unparsed) {line[:120]}", 0) + 1
            continue
        level, msg = m.groups()
        msg = re.sub(r"127\.0\.0\.\d+:\d+", "ADDR", msg)
        msg = re.sub(r"\(\d+ refused so far\)", "(N refused so far)", msg)
        msg = re.sub(r"\d+ms", "Nms", msg)
        k = f"[{level}] {msg}"
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def access_statuses(path, start):
    counts = {}
    try:
        with open(path, "rb") as f:
            f.seek(start)
            for line in f:
                m = re.search(rb'" (\d{1,3}) \d+ ', line)
                k = m.group(1).decode() if m else "unparsed"
                counts[k] = counts.get(k, 0) + 1
    except OSError:
        pass
    return counts


# ---------------------------------------------------------------- report


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = ANSI.sub("", (p.stdout + p.stderr)).strip()
        return text.splitlines()[0].strip() if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def ms(x):
    return f"{x * 1000:.1f}" if x is not None else "-"


def kib_mib(k):
    return f"{k / 1024:.1f} MiB" if k is not None else "-"


def fails_text(s):
    if not s["fails"]:
        return ""
    return "; ".join(f"{v} × {k}" for k, v in sorted(s["fails"].items(), key=lambda kv: -kv[1]))


def write_report(ctx, out_path):
    a = ctx["args"]
    L = []
    L.append("# nexushub under slow and hostile clients")
    L.append("")
    L.append(f"- date: {ctx['date']}")
    L.append(f"- machine: `nproc` = {os.cpu_count()}, CPU: {cpu_model()}, kernel {platform.release()}, "
             f"load average at start {ctx['loadavg']} (other work may share the machine: figures are indicative)")
    L.append(f"- command: `{a.cmdline}`" + (" (quick mode)" if a.quick else ""))
    L.append(f"- nexushub: {ctx['rev']}; {ctx['slowhttptest']}")
    workers = (f"`workers = {a.workers}`" if a.workers
               else f"`workers` at its default ({default_workers()}: one per core)")
    L.append(f"- nexushub: {workers}, `access_log` to a file, every other `[proxy]` key at its "
             "default (`handshake_timeout = 10`, `head_timeout = 10`, `client_timeout = 60`, `min_data_rate = 1024`, "
             "`min_data_rate_grace = 10`, `max_connections = 10000`, `max_connections_per_ip = 1000`); one app, "
             f"`nexushub whoami` started by nexushub, hosts `{HOST}` (the normal client) and `{TARGET_IP}` (so "
             f"that slowhttptest's URL can name the address, not a name that might resolve elsewhere); listening "
             f"on {TARGET_IP} with the dev certificate (key copied with mode 600).")
    L.append(f"- normal client: from {OTHER_IP}, one `GET /hello` every {a.interval * 1000:.0f} ms (closed loop: the "
             "next starts when the previous is done if that is later), each on a fresh TCP connection with a full "
             f"TLS handshake (Python ssl, certificate verified), `Connection: close`; gives up after "
             f"{PROBE_TIMEOUT:.0f} s. Latency = connect + handshake + request + whole answer. p50/p99/max are over "
             "the successful requests; failures are counted apart, by kind.")
    L.append(f"- attacks: slowhttptest from {TARGET_IP}, {a.conns} connections per round opened at {a.rate}/s, "
             f"for {a.duration} s per attack (new rounds start while time is left: slowhttptest does not reopen "
             "connections the server closed, and stops once none is left).")
    L.append("")
    L.append("## The normal client's latency")
    L.append("")
    L.append(f"Requests = those started during the phase (its length in brackets). Slow = successful requests "
             f"over {SLOW_MS / 1000:.0f} s. Longest = the longest wait, failures included. The client waits for each "
             "answer before the next request, so a stalled client makes few requests, and the p50 of a phase "
             "with few of them comes from the requests made before an attack took hold or after it ended: "
             "compare the request rate with the baseline's, and read max, longest and failures.")
    L.append("")
    L.append("| phase | requests | req/s | ok | failed | p50 ms | p99 ms | max ms | slow | longest ms | failures |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for title, s in ctx["latency"]:
        rate = f"{s['requests'] / s['window']:.1f}" if s.get("window") else "-"
        L.append(f"| {title} | {s['requests']} ({s.get('window', 0):.0f} s) | {rate} | {s['ok']} | {s['failed']} | "
                 f"{ms(s['p50'])} | {ms(s['p99'])} | {ms(s['max'])} | {s['slow']} | {ms(s['longest'])} | "
                 f"{fails_text(s)} |")
    L.append("")
    if ctx["attacks"]:
        L.append("## slowhttptest's own summary")
        L.append("")
        L.append("Peak = the most connections slowhttptest had in that state in any second of any round. "
                 "Closed and errors: summed over the rounds. Service available: slowhttptest's own probe "
                 "(a plain request on a new connection from the attacking address, answered within 3 s), "
                 "seconds available out of the seconds recorded. Last round: its final status line.")
        L.append("")
        L.append("| attack | rounds | peak connected | peak pending | closed | errors | service available | "
                 "last round: pending / connected / error / closed, available | how the rounds ended |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for key, title, s in ctx["attacks"]:
            last = s["last"]
            lr = (f"{last.get('pending', '-')} / {last.get('connected', '-')} / {last.get('error', '-')} / "
                  f"{last.get('closed', '-')}, {last.get('available', '-')}")
            exits = {}
            for e in s["exits"]:
                exits[e] = exits.get(e, 0) + 1
            ex = "; ".join(f"{v} × {k}" for k, v in exits.items())
            L.append(f"| {title} | {s['rounds']} | {s['peak_connected']} | {s['peak_pending']} | {s['closed']} | "
                     f"{s['errors']} | {s['seconds'] - s['unavailable']} of {s['seconds']} s | {lr} | {ex} |")
        L.append("")
        L.append("Commands (first round; later rounds differ only in `-l`, the time left):")
        L.append("")
        for key, cmd in ctx["commands"]:
            L.append(f"- {key}: `{' '.join(cmd)}`")
        L.append("")
    f = ctx.get("flood")
    if f:
        L.append("## Flood of idle connections from one address")
        L.append("")
        L.append(f"A helper opened up to {a.flood:,} TLS connections from {TARGET_IP} ({a.flood_threads} at a time, "
                 "TLS handshake only, then idle) while the normal client ran from "
                 f"{OTHER_IP}. Held = server-side ESTABLISHED sockets on nexushub's port from {TARGET_IP} "
                 "(/proc/net/tcp), 1 s after the helper finished opening. RSS = VmRSS of the nexushub process "
                 "alone (not its app).")
        L.append("")
        L.append("| attempted | handshakes completed | failed | held by nexushub | still open at release | "
                 "RSS before | RSS with them | KiB per held conn |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        per = "-"
        if f["rss_before"] is not None and f["rss_with"] is not None and f["held"]:
            per = f"{(f['rss_with'] - f['rss_before']) / f['held']:.1f}"
        L.append(f"| {a.flood:,} | {f['ok']:,} | {f['failed']:,} | {f['held'] if f['held'] is not None else '-'} | "
                 f"{f['alive'] if f['alive'] is not None else '-'} | {kib_mib(f['rss_before'])} | "
                 f"{kib_mib(f['rss_with'])} | {per} |")
        L.append("")
        L.append(f"Opening took {f['secs']} s; the helper's failures (a connection nexushub closes at accept, "
                 f"over its per-address cap, reaches the helper as an EOF or a reset in its handshake): "
                 f"{f['errors'] or 'none'}. "
                 f"The normal client's figures from {OTHER_IP} are the two flood rows of the first table.")
        L.append("")
    L.append("## nexushub's log during each phase")
    L.append("")
    L.append("stderr lines by kind (addresses blanked), and the access log's statuses (0 = the connection "
             "broke before the answer was complete).")
    L.append("")
    for title, kinds, statuses in ctx["logs"]:
        st = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items())) or "none"
        L.append(f"- **{title}**: access log statuses {st}")
        for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:8]:
            L.append(f"  - {v:,} × `{k[:200]}`")
    L.append("")
    L.append("## Findings")
    L.append("")
    if ctx["findings"]:
        for x in ctx["findings"]:
            L.append(f"- {x}")
    else:
        L.append(f"- none: the normal client had no failure and no request over {SLOW_MS / 1000:.0f} s in any "
                 "phase, and nexushub stayed up.")
    L.append("")
    text = "\n".join(L)
    with open(out_path, "w") as fh:
        fh.write(text)
    return text


# ---------------------------------------------------------------- run


def default_workers():
    """nexushub's default `workers`: one per core, 2 to 64 (config.rs)."""
    return min(max(os.cpu_count() or 1, 2), 64)


def nexushub_conf(port, cert, key, workers, access):
    return f"""# benches/hostile: nexushub (default worker pool) in front of one whoami app.
[proxy]
listen = {TARGET_IP}:{port}
cert = {cert}
key = {key}
{f"workers = {workers}" if workers else "# workers: the default, one per core"}
access_log = {access}
log_level = info

[app whoami]
hosts = {HOST}, {TARGET_IP}
command = exec "$NEXUSHUB" whoami
health = /hello
"""


def findings_for(title, s, ctx, key=None):
    out = []
    if s["failed"]:
        out.append(f"{title}: the normal client had {s['failed']} failed request(s) of {s['requests']} "
                   f"({fails_text(s)}); longest wait {ms(s['longest'])} ms.")
    if s["slow"]:
        out.append(f"{title}: {s['slow']} of the normal client's successful requests took over "
                   f"{SLOW_MS / 1000:.0f} s (max {ms(s['max'])} ms, p99 {ms(s['p99'])} ms).")
    if s["requests"] == 0:
        out.append(f"{title}: the normal client made no request at all.")
    if out and key:
        out.append(f"{title}: to reproduce, `benches/hostile --quick --only {key}` (add `--keep-tmp` for "
                   "nexushub's log, its access log and slowhttptest's CSV and HTML reports).")
    return out


def cmd_run(a):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.chmod(a.tmp, 0o755)
    procs = []
    ctx = {"args": a, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "latency": [], "attacks": [], "commands": [], "logs": [], "findings": [], "flood": None}
    with open("/proc/loadavg") as f:
        ctx["loadavg"] = " ".join(f.read().split()[:3])
    m = re.search(r"version (\S+)", first_line(["slowhttptest", "-h"]))
    ctx["slowhttptest"] = f"slowhttptest {m.group(1) if m else '?'}"
    rev = subprocess.run(["git", "-C", a.repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", a.repo, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True)
    ctx["rev"] = (rev.stdout.strip() or "?") + (" (+ uncommitted changes in src/)" if dirty.stdout.strip() else "")
    if a.custom_bin:
        ctx["rev"] = f"binary {a.bin} (NEXUSHUB_BIN; repo at {ctx['rev']})"

    cert, key = os.path.join(a.tmp, "cert.pem"), os.path.join(a.tmp, "key.pem")
    for src, dst in (("dev.pem", cert), ("dev.key", key)):
        with open(os.path.join(a.certs, src), "rb") as f:
            data = f.read()
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    a.ca = os.path.join(a.certs, "ca.pem")
    port = free_port()
    access = os.path.join(a.tmp, "access.log")
    conf = os.path.join(a.tmp, "nexushub.conf")
    write(conf, nexushub_conf(port, cert, key, a.workers, access))
    nh = None
    try:
        chk = subprocess.run([a.bin, "check", "--config", conf], capture_output=True, text=True, timeout=30)
        if chk.returncode != 0:
            raise BenchError(f"nexushub check rejects the config: {(chk.stdout + chk.stderr).strip()}")
        nh = Proc("nexushub", [a.bin, "run", "--config", conf], os.path.join(a.tmp, "nexushub.log"), a.pidfile)
        procs.append(nh)
        wait_log(nh, r"\] listening on ")
        wait_log(nh, r"app whoami: healthy at")
        # One request through it before measuring anything.
        why = None
        for _ in range(50):
            try:
                why = one_request(port, OTHER_IP, client_ctx(a.ca))
            except Exception as e:  # noqa: BLE001
                why = classify(e)
            if why is None:
                break
            time.sleep(0.1)
        if why is not None:
            raise BenchError(f"nexushub does not answer GET /hello from {OTHER_IP}: {why}")
        log(f"nexushub on {TARGET_IP}:{port}, {a.workers or default_workers()} workers, pid {nh.pid}")
        time.sleep(1.0)

        def phase(title, body, key=None):
            """Runs body() with the normal client measuring; records latency and logs."""
            log_start, acc_start = nh.log_size(), os.path.getsize(access) if os.path.exists(access) else 0
            probe = Probe(a, port, re.sub(r"\W+", "-", title))
            time.sleep(0.5)
            t0 = time.time()
            extra = body()
            t1 = time.time()
            probe.finish()
            time.sleep(1.5)  # the access log is flushed every second
            if not nh.alive():
                raise BenchError(f"nexushub exited during \"{title}\" (code {nh.proc.returncode}): "
                                 f"{nh.log_text()[-1500:]!r}")
            windows = extra.get("windows") if extra else None
            for wtitle, since, until in windows or [(title, t0, t1)]:
                s = latency_summary(read_probe(probe.path, since, until))
                s["window"] = until - since
                ctx["latency"].append((wtitle, s))
                ctx["findings"].extend(findings_for(wtitle, s, ctx, key))
                log(f"{wtitle}: {s['requests']} requests, p50 {ms(s['p50'])} ms, p99 {ms(s['p99'])} ms, "
                    f"max {ms(s['max'])} ms, failed {s['failed']} {fails_text(s)}")
            text = nh.log_text(log_start)
            ctx["logs"].append((title, log_kinds(text), access_statuses(access, acc_start)))
            return text

        # --- baseline
        phase("baseline (no attack)", lambda: time.sleep(a.baseline) or {})

        # --- flood of idle connections from 127.0.0.1, the normal client on 127.0.0.2.
        # First after the baseline, so that its memory figure starts from a heap the
        # slow attacks (64 MiB responses) have not grown.
        if not a.only or "flood" in a.only:
            time.sleep(1.0)
            rss_before = vm_rss_kib(nh.pid)
            flood = {}

            def run_flood():
                fp = Proc("flood", [sys.executable, os.path.abspath(__file__), "flood", "--port", str(port),
                                    "--source", TARGET_IP, "--n", str(a.flood), "--deadline", str(a.flood_deadline),
                                    "--threads", str(a.flood_threads)],
                          os.path.join(a.tmp, "flood.log"), a.pidfile, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
                try:
                    t_open = time.time()
                    line = read_line(fp.proc, "READY", a.flood_deadline + 40) or ""
                    t_held = time.time()
                    parts = line.split(" ", 4)
                    if len(parts) < 4:
                        raise BenchError(f"the flood helper gave {line!r}: {fp.log_text()[-1000:]}")
                    flood.update(ok=int(parts[1]), failed=int(parts[2]), secs=parts[3],
                                 errors=parts[4].strip() if len(parts) > 4 else "")
                    time.sleep(1.0)
                    flood["held"] = established(port, TARGET_IP)
                    flood["rss_with"] = vm_rss_kib(nh.pid)
                    log(f"flood: {flood['ok']} opened, {flood['failed']} failed in {flood['secs']} s; nexushub "
                        f"holds {flood['held']} from {TARGET_IP}; RSS {kib_mib(rss_before)} -> "
                        f"{kib_mib(flood['rss_with'])}")
                    time.sleep(a.flood_hold)
                    t_end = time.time()
                    fp.proc.stdin.close()
                    alive = read_line(fp.proc, "ALIVE", 60)
                    flood["alive"] = int(alive.split()[1]) if alive else None
                finally:
                    fp.stop(grace=30)
                return {"windows": [("flood: while opening idle connections", t_open, t_held),
                                    (f"flood: {a.flood_hold} s with them held", t_held, t_end)]}

            log(f"flood: up to {a.flood} idle TLS connections from {TARGET_IP}")
            phase("idle-connection flood", run_flood, "flood")
            flood["rss_before"] = rss_before
            ctx["flood"] = flood
            if flood.get("alive") is not None and flood["alive"] < flood["ok"]:
                ctx["findings"].append(f"flood: only {flood['alive']:,} of the {flood['ok']:,} idle connections "
                                       f"were still open after {a.flood_hold} s")

        # --- slow attacks
        for key, title, flag, path, extra in ATTACKS:
            if a.only and key not in a.only:
                continue
            res = {}

            def attack(key=key, flag=flag, path=path, extra=extra, res=res):
                res["rounds"] = run_attack(a, port, key, flag, path, extra, a.duration)
                return {}

            log(f"{title}: {a.conns} connections, {a.duration} s")
            phase(title, attack, key)
            s = attack_summary(res["rounds"])
            ctx["attacks"].append((key, title, s))
            if res["rounds"]:
                ctx["commands"].append((title, res["rounds"][0]["argv"]))
            left = wait_drained(port, 30)
            if left:
                ctx["findings"].append(f"{title}: nexushub still held {left} client connection(s) 30 s after "
                                       "slowhttptest ended.")
            if s["unavailable"]:
                ctx["findings"].append(f"{title}: slowhttptest's own probe found the service unavailable for "
                                       f"{s['unavailable']} of {s['seconds']} s.")

        # Whatever nexushub logged at WARN/ERROR that the attacks do not explain.
        full = nh.log_text()
        for line in full.splitlines():
            if "panicked" in line or "[ERROR]" in line:
                ctx["findings"].append(f"nexushub logged: `{line[:240]}`")
        nh.stop()
        text = write_report(ctx, os.path.join(a.out, "hostile.md"))
        print(text)
        log(f"wrote {os.path.join(a.out, 'hostile.md')}")
        return 0
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        for p in procs:
            p.stop()
        # Everything we started is gone: the exit trap has nothing left to do.
        open(a.pidfile, "w").close()


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
    r.add_argument("--cmdline", default="benches/hostile")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--custom-bin", action="store_true")
    r.add_argument("--workers", type=int, default=None)
    r.add_argument("--conns", type=int, default=300)
    r.add_argument("--rate", type=int, default=50)
    r.add_argument("--duration", type=int, default=30)
    r.add_argument("--baseline", type=float, default=10)
    r.add_argument("--interval", type=float, default=0.075)
    r.add_argument("--flood", type=int, default=5000)
    r.add_argument("--flood-threads", type=int, default=32)
    r.add_argument("--flood-deadline", type=int, default=60)
    r.add_argument("--flood-hold", type=int, default=10)
    r.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=[])
    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-seconds", type=float, default=600)
    fl = sub.add_parser("flood")
    fl.add_argument("--port", type=int, required=True)
    fl.add_argument("--source", required=True)
    fl.add_argument("--n", type=int, required=True)
    fl.add_argument("--deadline", type=int, default=60)
    fl.add_argument("--threads", type=int, default=32)
    a = ap.parse_args()
    if a.cmd == "probe":
        return cmd_probe(a)
    if a.cmd == "flood":
        return cmd_flood(a)
    known = {k for k, *_ in ATTACKS} | {"flood"}
    if any(x not in known for x in a.only):
        ap.error(f"--only takes a comma-separated list of {', '.join(sorted(known))}")
    if not (1 <= a.duration <= 300 and 1 <= a.conns <= 5000 and 1 <= a.rate <= 1000 and (a.workers is None or 1 <= a.workers <= 4096)
            and 1 <= a.flood <= 20000 and 0.01 <= a.interval <= 1 and 1 <= a.flood_hold <= 40):
        ap.error("duration 1..300 s, conns 1..5000, rate 1..1000, workers 1..4096, flood 1..20000, "
                 "interval 0.01..1 s, flood hold 1..40 s")
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
