#!/usr/bin/env python3
"""benches/ab.py: nexushub builds (or settings) against each other, interleaved.

The A/B checks behind docs/performance.md's "What closed the p99 gaps" figures: one scenario
of benches/compare, several targets, the order rotated every round so that a
machine that speeds up or slows down during the run favours none of them.

  benches/ab.py --bin old=/tmp/nexushub-old --bin new=target/release/nexushub \\
      --bin off=target/release/nexushub:"access_log = off" --scen ka64 --rounds 8

--bin NAME=PATH[:LINES]  a nexushub binary to run as target NAME; LINES are
                         `key = value` lines for [proxy], separated by `;`, that
                         replace the benchmark config's own (repeatable)
--others haproxy,nginx   the other proxies to run as well (default: both; "" for none)
--scen KEY               ka16, ka64, ka256, big or close (benches/compare's keys)
--rounds N --dur S       measured rounds and seconds per run (one 2 s warm-up first)

Uses benches/compare.py's backend, configs and wrk driver, so nginx, haproxy and
wrk must be installed (benches/compare installs them). Prints every run and the
medians; everything it starts runs in its own process group and is stopped at
the end, on an error, or on SIGTERM/SIGINT.
"""

import argparse
import hashlib
import os
import re
import signal
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_lines(conf, lines):
    """conf with each `key = value` line replacing its key's, or added to [proxy]."""
    for line in [x.strip() for x in lines.split(";") if x.strip()]:
        key = line.split("=")[0].strip()
        if re.search(rf"(?m)^{re.escape(key)} =", conf):
            conf = re.sub(rf"(?m)^{re.escape(key)} =.*$", line, conf)
        else:
            conf = conf.replace("[proxy]\n", f"[proxy]\n{line}\n", 1)
    return conf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", action="append", default=[], required=True)
    ap.add_argument("--others", default="haproxy,nginx")
    ap.add_argument("--scen", default="ka64", choices=[s[0] for s in C.SCENARIOS])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--dur", type=int, default=5)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

    tmp = subprocess.check_output(["mktemp", "-d", "/tmp/nexushub-ab.XXXXXX"], text=True).strip()
    os.chmod(tmp, 0o755)
    pidfile = os.path.join(tmp, "pids")
    open(pidfile, "w").close()
    certs = os.path.join(ROOT, "examples", "certs")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    for src, dst in (("dev.pem", cert), ("dev.key", key)):
        with open(os.path.join(certs, src), "rb") as f:
            data = f.read()
        with os.fdopen(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
    lua = os.path.join(tmp, "done.lua")
    C.write(lua, C.WRK_LUA)
    servers, ports = {}, {}
    try:
        bd = os.path.join(tmp, "backend")
        os.makedirs(os.path.join(bd, "www"))
        os.makedirs(os.path.join(bd, "tmp"))
        big = os.urandom(C.BIG_SIZE)
        big_sha = hashlib.sha256(big).hexdigest()
        with open(os.path.join(bd, "www", "1m"), "wb") as f:
            f.write(big)
        bport = C.free_port()
        C.write(os.path.join(bd, "nginx.conf"), C.nginx_backend_conf(bd, bport))
        servers["backend"] = C.Server("backend", ["nginx", "-p", bd, "-e", bd + "/error.log", "-c",
                                                  bd + "/nginx.conf"], bd + "/out.log", pidfile)
        C.wait_port(servers["backend"], bport)
        for spec in a.bin:
            name, _, rest = spec.partition("=")
            path, _, lines = rest.partition(":")
            if not name or not path or name in ports:
                raise C.BenchError(f"--bin {spec!r}: expected a new NAME=PATH[:LINES]")
            nd = os.path.join(tmp, name)
            os.makedirs(nd)
            ports[name] = C.free_port()
            conf = with_lines(C.nexushub_conf(nd, ports[name], bport, cert, key), lines)
            C.write(nd + "/nexushub.conf", conf)
            servers[name] = C.Server(name, [path, "run", "--config", nd + "/nexushub.conf"],
                                     nd + "/stderr.log", pidfile)
            C.wait_log(servers[name], r"listening on")
        others = [o for o in a.others.split(",") if o]
        if "nginx" in others:
            gd = os.path.join(tmp, "nginx")
            os.makedirs(gd + "/tmp")
            ports["nginx"] = C.free_port()
            C.write(gd + "/nginx.conf", C.nginx_proxy_conf(gd, ports["nginx"], bport, cert, key))
            servers["nginx"] = C.Server("nginx", ["nginx", "-p", gd, "-e", gd + "/error.log", "-c",
                                                  gd + "/nginx.conf"], gd + "/out.log", pidfile)
            C.wait_port(servers["nginx"], ports["nginx"])
        if "haproxy" in others:
            hd = os.path.join(tmp, "haproxy")
            os.makedirs(hd)
            ports["haproxy"] = C.free_port()
            pem = hd + "/cert.pem"
            with open(pem, "w") as f, open(cert) as c, open(key) as k:
                f.write(c.read() + k.read())
            C.write(hd + "/haproxy.cfg", C.haproxy_conf(hd, ports["haproxy"], bport, pem, os.cpu_count()))
            servers["haproxy"] = C.Server("haproxy", ["haproxy", "-db", "-f", hd + "/haproxy.cfg"],
                                          hd + "/out.log", pidfile)
            C.wait_port(servers["haproxy"], ports["haproxy"])
        ca = os.path.join(certs, "ca.pem")
        for t in ports:  # answers both paths right (and waits for nexushub's health check)
            C.sanity(t, ports[t], ca, big_sha)
        _, title, path, conns, close = {s[0]: s for s in C.SCENARIOS}[a.scen]
        targets = list(ports)
        runs = {t: [] for t in targets}
        for rnd in range(a.rounds + 1):
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                before = C.cpu_ticks(servers[t].pid)
                r = C.run_wrk(f"https://{C.HOST}:{ports[t]}{path}", conns, a.dur if rnd else 2, close, lua)
                cpu = (C.cpu_ticks(servers[t].pid) - before) / C.CLK_TCK * 1e6 / max(1, r["requests"])
                r["cpu_us"] = cpu
                if rnd:
                    runs[t].append(r)
                print(f"{'warm-up' if not rnd else f'round {rnd}':8} {t:10} {r['rps']:9,.0f} req/s  p50 "
                      f"{r['p50'] / 1000:6.2f}  p99 {r['p99'] / 1000:6.2f}  max {r['max'] / 1000:7.1f} ms  "
                      f"cpu {cpu:6.1f} us/req", flush=True)
        print(f"--- {title}: medians of {a.rounds} rounds of {a.dur} s [p99 min-max]")
        for t in targets:
            rs = runs[t]
            p99 = [r["p99"] / 1000 for r in rs]
            print(f"{t:10} {statistics.median(r['rps'] for r in rs):9,.0f} req/s  p50 "
                  f"{statistics.median(r['p50'] for r in rs) / 1000:6.2f}  p99 {statistics.median(p99):6.2f} "
                  f"[{min(p99):.2f}-{max(p99):.2f}] ms  cpu {statistics.median(r['cpu_us'] for r in rs):6.1f} us/req")
        return 0
    except C.BenchError as e:
        print(f"ab: {e}", file=sys.stderr)
        return 1
    finally:
        for s in servers.values():
            s.stop()
        subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    sys.exit(main())
