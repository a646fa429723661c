#!/usr/bin/env python3
"""bench/tls_summary.py — the Markdown summary of bench/tls.sh: tables of medians
(min–max) from its tab-separated files, every ratio ferry/peer, and the targets.

  tls_summary.py WRK_TSV MEM_TSV WALL_TSV RESUME_TSV BG_LIST CONNS CLOSE_CONNS DURATION IDLE_N N RESUME_N STIME_PROCS

WRK_TSV lines are bench/lib.sh's wrk_run ones (name mode round req/s requests
server_µs/req server_% wrk_% machine_% p99_ms errors user_µs/req others_%;
modes keepalive, close-ec, close-rsa from wrk, full-ec, full-rsa from openssl s_time);
MEM_TSV: name round ready rss0_kb rss1_kb closed; WALL_TSV: part client round
seconds; RESUME_TSV: server round handshakes resumed req/s cpu_s succeeded.
"""
import statistics
import sys


def rows(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def med(xs):
    return statistics.median(xs) if xs else 0.0


def rng(xs, fmt):
    if not xs:
        return "–"
    return (fmt + " (" + fmt + "–" + fmt + ")") % (med(xs), min(xs), max(xs))


def comma(x):
    return "{:,.0f}".format(x)


def crng(xs):
    if not xs:
        return "–"
    return "%s (%s–%s)" % (comma(med(xs)), comma(min(xs)), comma(max(xs)))


def verdict(ok):
    return "met" if ok else "**missed**"


def main():
    wrk, mem, wall, resume = (rows(p) for p in sys.argv[1:5])
    bg = [float(x[0]) for x in rows(sys.argv[5])]
    conns, close_conns, duration, idle_n, n, resume_n, stime_procs = sys.argv[6:13]
    idle_n = int(idle_n)

    others = [float(r[12]) for r in wrk]
    print()
    if bg or others:
        line = ""
        if bg:
            line += "Other processes before each server start: median %d%%, max %d%% of one core. " % (med(bg), max(bg))
        if others:
            line += "During the wrk runs: median %d%%, max %d%%." % (med(others), max(others))
        if (bg and med(bg) > 10) or (others and med(others) > 15):
            line += " **The machine was busy: these figures are distorted; rerun on a quiet machine (QUIET_WAIT helps).**"
        print(line)
        print()

    def col(name, mode, i):
        return [float(r[i]) for r in wrk if r[0] == name and r[1] == mode and r[i] != "-"]

    medians = {}
    modes = [("keepalive", "### 1. Keep-alive requests over TLS: wrk -t1 -c%s -d%ss" % (conns, duration)),
             ("close-ec", "### 2. A new TLS connection per request, ECDSA P-256: wrk -t1 -c%s -d%ss -H 'Connection: close'" % (close_conns, duration)),
             ("close-rsa", "### 2. A new TLS connection per request, RSA-2048: wrk -t1 -c%s -d%ss -H 'Connection: close'" % (close_conns, duration)),
             ("full-ec", "### 2. A full handshake per request, ECDSA P-256: %s × `openssl s_time -new -www / -time %s`" % (stime_procs, duration)),
             ("full-rsa", "### 2. A full handshake per request, RSA-2048: %s × `openssl s_time -new -www / -time %s`" % (stime_procs, duration))]
    for mode, title in modes:
        names = [x for x in ("ferry", "nginx") if col(x, mode, 3)]
        if not names:
            continue
        print(title)
        print()
        if mode.startswith("close"):
            print("wrk keeps each connection's SSL object (`SSL_clear`), so every connection but the first resumes the session of the one before: these are resumed handshakes (ECDHE, no signature), which is why the certificate's key type hardly matters here.")
            print()
        if mode.startswith("full"):
            print("`-new`: no session is reused, so every connection is a full handshake with a signature by the server's key; req/s is connections per second, and the wrk column is s_time's CPU.")
            print()
        print("| server | req/s | server CPU µs/req | of which user µs/req | server CPU % | wrk CPU % | other processes CPU % | p99 ms | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in names:
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                name, crng(col(name, mode, 3)), rng(col(name, mode, 5), "%.2f"), rng(col(name, mode, 11), "%.2f"),
                rng(col(name, mode, 6), "%.0f"), rng(col(name, mode, 7), "%.0f"), rng(col(name, mode, 12), "%.0f"),
                rng(col(name, mode, 9), "%.2f"), med(col(name, mode, 10))))
            medians[(name, mode, "rps")] = med(col(name, mode, 3))
            medians[(name, mode, "us")] = med(col(name, mode, 5))
        print()

    if mem:
        print("### 3. Memory: %d idle TLS keep-alive connections (one request each), %d rounds" % (idle_n, len({r[1] for r in mem})))
        print()
        print("| server | connections ready | RSS before (MiB) | RSS with the connections (MiB) | user-space bytes/conn | closed by the server while held |")
        print("|---|---|---|---|---|---|")
        for name in ("ferry", "nginx"):
            rs = [r for r in mem if r[0] == name]
            if not rs:
                continue
            per = [(int(r[4]) - int(r[3])) * 1024 / idle_n for r in rs]
            m = med(per)
            mid = min(rs, key=lambda r: abs((int(r[4]) - int(r[3])) * 1024 / idle_n - m))
            print("| %s | %s | %.1f | %.1f | %s | %s |" % (name, mid[2], int(mid[3]) / 1024, int(mid[4]) / 1024, rng(per, "%.0f"),
                                                      ",".join(r[5] for r in rs)))
            medians[(name, "mem")] = m
        print()

    labels = {"ferry": "`ferry fetch --cacert CA -n %s -c 1`" % n, "curl": "`curl --cacert CA -K` (%s URLs, one invocation)" % n,
              "node-https": "Node `https.Agent({keepAlive: true})`"}
    placements = (("seq", "nginx on CPU 1, the client on CPU 0"),
                  ("same", "nginx and the client both on CPU 0 (no cross-CPU wake-up per request)"))
    for part, where in placements:
        times = {c: [float(r[3]) for r in wall if r[0] == part and r[1] == c] for c in labels}
        if not any(times.values()):
            continue
        print("### 4. %s sequential keep-alive HTTPS GETs against nginx, wall time of the whole process: %s" % (n, where))
        print()
        print("| client | wall ms | req/s (%s / median wall) | ferry is faster by |" % n)
        print("|---|---|---|---|")
        for c, label in labels.items():
            if not times[c]:
                continue
            m = med(times[c])
            medians[("wall", part, c)] = m
            faster = "–" if c == "ferry" or not times["ferry"] else "%.2f×" % (m / med(times["ferry"]))
            print("| %s | %s | %s | %s |" % (label, rng([t * 1e3 for t in times[c]], "%.1f"), comma(int(n) / m), faster))
        print()

    if resume:
        print("### 4. %s requests, each on a new TLS connection: `ferry bench --cacert CA -M 1 -c 1 -n %s`" % (resume_n, resume_n))
        print()
        print("| server | handshakes | resumed | resumed % | handshakes/s | client CPU µs per handshake |")
        print("|---|---|---|---|---|---|")
        for name in ("nginx", "ferry"):
            rs = [r for r in resume if r[0] == name]
            if not rs:
                continue
            pct = [100.0 * int(r[3]) / int(r[2]) if int(r[2]) else 0.0 for r in rs]
            print("| %s | %s | %s | %s | %s | %s |" % (
                name, rng([float(r[2]) for r in rs], "%.0f"), rng([float(r[3]) for r in rs], "%.0f"), rng(pct, "%.1f"),
                crng([float(r[4]) for r in rs]), rng([float(r[5]) * 1e6 / max(1, int(r[2])) for r in rs], "%.0f")))
            medians[(name, "resumed")] = min(pct)
        print()

    print("### Ratios and targets (ferry)")
    print()
    print("| target | figure | |")
    print("|---|---|---|")

    def us_ratio(mode, label, target):
        f, g = medians.get(("ferry", mode, "us")), medians.get(("nginx", mode, "us"))
        if f and g:
            r = f / g
            rps = medians[("ferry", mode, "rps")] / medians[("nginx", mode, "rps")]
            print("| %s ≤ %.2f× nginx | %.2f µs vs %.2f µs = **%.3f×** (req/s: %.2f×) | %s |" % (label, target, f, g, r, rps, verdict(r <= target)))

    us_ratio("keepalive", "keep-alive over TLS: server CPU per request", 0.85)
    us_ratio("close-ec", "a handshake per request (wrk, resumed), ECDSA P-256: server CPU per request", 1.0)
    us_ratio("close-rsa", "a handshake per request (wrk, resumed), RSA-2048: server CPU per request", 1.0)
    us_ratio("full-ec", "a full handshake per request (s_time -new), ECDSA P-256: server CPU", 1.0)
    us_ratio("full-rsa", "a full handshake per request (s_time -new), RSA-2048: server CPU", 1.0)
    f, g = medians.get(("ferry", "mem")), medians.get(("nginx", "mem"))
    if f is not None and g:
        print("| bytes per idle TLS connection ≤ nginx's (aim: half) | %.0f vs %.0f bytes = **%.3f×** | %s%s |" % (
            f, g, f / g, verdict(f <= g), ", half: " + verdict(f <= g / 2) if f <= g else ""))
    for part, where in (("seq", "pinned"), ("same", "same CPU")):
        fw = medians.get(("wall", part, "ferry"))
        if not fw:
            continue
        for c, target, label in (("curl", 1.5, "one `curl` invocation"), ("node-https", 3.0, "Node `https.Agent`")):
            w = medians.get(("wall", part, c))
            if w:
                print("| %s sequential HTTPS GETs (%s): `ferry fetch` ≥ %.1f× faster than %s | %.1f vs %.1f ms = **%.2f×** | %s |" % (
                    n, where, target, label, fw * 1e3, w * 1e3, w / fw, verdict(w / fw >= target)))
    for name in ("nginx", "ferry"):
        p = medians.get((name, "resumed"))
        if p is not None:
            print("| `ferry bench -M 1` against %s: resumed ≥ 90 %% (the lowest round) | %.1f %% | %s |" % (name, p, verdict(p >= 90)))


if __name__ == "__main__":
    main()
