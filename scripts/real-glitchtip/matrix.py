#!/usr/bin/env python3
"""Fault matrix of scripts/test-real-glitchtip.sh against the real GlitchTip lab.

Runs one fault at a time, each followed by recovery; the lab is driven by the lab's own
scenario.sh. Probe results come from the exporter's /metrics (polled every second), alerts
only from Prometheus's /api/v1/alerts. Prints one line per fault and writes
"PASSED FAILED" to WORK/tally (the caller prints the closing line); exit status 1 when a
row failed.

Environment: EXPORTER (host:port), PROM (host:port), LAB_SCENARIO (path of scenario.sh),
LAB_DIR, TARGET (target name), WORK (folder for logs), BASELINE (seconds, default 300),
REALGT_T0 (epoch the calling script started).
Standard library only (the machine's python3).
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

EXPORTER = os.environ["EXPORTER"]
PROM = os.environ["PROM"]
SCENARIO = os.environ["LAB_SCENARIO"]
LAB_DIR = os.environ["LAB_DIR"]
TARGET = os.environ.get("TARGET", "lab")
WORK = os.environ["WORK"]
BASELINE = int(os.environ.get("BASELINE", "300"))
# seconds since the calling script started (its log lines and these share one clock)
T_START = time.monotonic() - (time.time() - float(os.environ.get("REALGT_T0", time.time())))
HTTP_CHECKS = ("health", "database", "api")
ALL_CHECKS = HTTP_CHECKS + ("canary",)
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

PASSED = 0
FAILED = 0


def say(msg):
    print(f"realgt: [{int(time.monotonic() - T_START):4d}s] {msg}", file=sys.stderr, flush=True)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


class Metrics:
    """One scrape of the exporter; empty when it did not answer."""

    def __init__(self):
        self.rows = []
        try:
            text = get(f"http://{EXPORTER}/metrics")
        except Exception:  # noqa: BLE001 - an unanswered scrape is an empty one
            return
        for line in text.splitlines():
            m = LINE.match(line)
            if m:
                try:
                    value = float(m.group(3))
                except ValueError:
                    continue
                self.rows.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), value))

    def ok(self):
        return bool(self.rows)

    def value(self, name, **labels):
        for n, lab, v in self.rows:
            if n == name and all(lab.get(k) == w for k, w in labels.items()):
                return v
        return None

    def label_of_one(self, name, key, **labels):
        """The `key` label of the series of `name` whose value is 1 (a reason)."""
        for n, lab, v in self.rows:
            if n == name and v == 1 and all(lab.get(k) == w for k, w in labels.items()):
                return lab.get(key)
        return None

    def fails(self, check):
        v = self.value("glitchtip_consecutive_failures", target=TARGET, check=check)
        return int(v) if v is not None else None

    def reason(self, check):
        return self.label_of_one("glitchtip_probe_failure_reason", "reason", target=TARGET, check=check)

    def status(self, check):
        v = self.value("glitchtip_http_status_code", target=TARGET, check=check)
        return int(v) if v is not None else None

    def ingest_reason(self):
        return self.label_of_one("glitchtip_ingest_failure_reason", "reason", target=TARGET)

    def queue_up(self):
        return self.value("glitchtip_queue_up", target=TARGET)

    def queue_reason(self):
        return self.label_of_one("glitchtip_queue_failure_reason", "reason", target=TARGET)

    def queue_len(self):
        v = self.value("glitchtip_queue_length", target=TARGET, queue="celery")
        return int(v) if v is not None else None

    def canaries(self, result):
        return self.value("glitchtip_ingest_canaries_total", target=TARGET, result=result) or 0

    def healthy(self):
        return (
            self.ok()
            and all(self.fails(c) == 0 and self.value("glitchtip_up", target=TARGET, check=c) == 1 for c in ALL_CHECKS)
            and self.queue_up() == 1
        )

    def unhealthy_summary(self):
        out = []
        for c in ALL_CHECKS:
            if self.value("glitchtip_up", target=TARGET, check=c) != 1:
                out.append(f"{c} {self.reason(c)}")
        if self.queue_up() != 1:
            out.append(f"queue {self.queue_reason()}")
        return ", ".join(out) or "none"


def alerts(state="firing"):
    """Names of the alerts of TARGET in `state`, from Prometheus's API; None if it did not answer."""
    try:
        data = json.loads(get(f"http://{PROM}/api/v1/alerts"))
    except Exception:  # noqa: BLE001
        return None
    return sorted(
        {
            a["labels"].get("alertname", "?")
            for a in data.get("data", {}).get("alerts", [])
            if a.get("state") == state and a["labels"].get("target", TARGET) == TARGET
        }
    )


def lab(name):
    with open(os.path.join(WORK, "lab.log"), "a") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} scenario {name}\n")
        log.flush()
        rc = subprocess.run([SCENARIO, name, LAB_DIR], stdout=log, stderr=log, timeout=180).returncode
    if rc != 0:
        say(f"scenario.sh {name} exited {rc}")
    return rc == 0


def result(ok, line):
    global PASSED, FAILED
    if ok:
        PASSED += 1
    else:
        FAILED += 1
    print(f"{'PASS' if ok else 'FAIL'} {line}", flush=True)


def secs(t):
    return "-" if t is None else f"{t:.0f} s"


class Watch:
    """Polls the exporter and Prometheus every second from the fault's start and keeps
    the first time each thing was seen."""

    def __init__(self, checks):
        self.t0 = time.monotonic()
        self.checks = checks
        self.first = {}  # (check, n) -> seconds
        self.reasons = {c: [] for c in checks}  # distinct reasons in order
        self.reason_at = {}  # (check, reason) -> seconds when first seen
        self.statuses = {c: [] for c in checks}
        self.fired = {}  # alert -> seconds
        self.queue = []  # queue lengths seen
        self.queue_reasons = []
        self.ingest_reasons = []
        self.last = None

    def now(self):
        return time.monotonic() - self.t0

    def poll(self):
        m = Metrics()
        t = self.now()
        if m.ok():
            self.last = m
            for c in self.checks:
                n = m.fails(c) or 0
                for k in (1, 2):
                    if n >= k and (c, k) not in self.first:
                        self.first[(c, k)] = t
                r = m.reason(c)
                if n >= 1 and r and r not in self.reasons[c]:
                    self.reasons[c].append(r)
                    self.reason_at[(c, r)] = t
                s = m.status(c)
                if n >= 1 and s is not None and s not in self.statuses[c]:
                    self.statuses[c].append(s)
            q = m.queue_len()
            if q is not None and (not self.queue or self.queue[-1] != q):
                self.queue.append(q)
            qr = m.queue_reason()
            if qr and qr != "none" and qr not in self.queue_reasons:
                self.queue_reasons.append(qr)
            ir = m.ingest_reason()
            if ir and ir != "none" and ir not in self.ingest_reasons:
                self.ingest_reasons.append(ir)
        for a in alerts() or []:
            self.fired.setdefault(a, t)
        return m

    def run_until(self, seconds, done=lambda w: False):
        end = self.t0 + seconds
        while time.monotonic() < end:
            self.poll()
            if done(self):
                return True
            time.sleep(1)
        return False

    def fail_times(self, check):
        return self.first.get((check, 1)), self.first.get((check, 2))

    def seen(self, check):
        # the canary's own reason (not_visible, rejected, ...) says more than its core one
        if check == "canary":
            r = "/".join(self.ingest_reasons) or "ok"
        else:
            r = "/".join(f"{x}@{self.reason_at[(check, x)]:.0f}s" for x in self.reasons[check]) or "ok"
        s = "/".join(str(x) for x in self.statuses[check])
        return f"{check} {r}" + (f" (status {s})" if s else "")

    def queue_summary(self):
        if self.queue_reasons:
            return "queue " + "/".join(self.queue_reasons)
        if len(self.queue) >= 2:
            return f"queue celery {self.queue[0]}->{max(self.queue)}"
        return f"queue celery {self.queue[0] if self.queue else '?'}"


def wait_resolved(limit):
    """Seconds until every check and the queue are up and no alert of the target fires."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        m = Metrics()
        if m.healthy() and alerts() == []:
            return time.monotonic() - t0
        time.sleep(1)
    return None


def recover(steps, limit=240, stuck_fix=None, stuck_after=90):
    """Runs the recovery scenario steps; when the lab is not healthy after `stuck_after` s
    and `stuck_fix` is given (the worker stuck after a Redis or PostgreSQL outage), runs
    those steps too. Returns (seconds to resolved or None, note)."""
    t0 = time.monotonic()
    for s in steps:
        lab(s)
    note = ""
    if stuck_fix:
        if wait_resolved(stuck_after) is None:
            m = Metrics()
            note = f"; not recovered {stuck_after} s after {'+'.join(steps)} ({m.unhealthy_summary()}): {'+'.join(stuck_fix)}"
            for s in stuck_fix:
                lab(s)
    left = limit - (time.monotonic() - t0)
    r = wait_resolved(max(left, 30))
    return (None if r is None else time.monotonic() - t0), note


def row(name, check, alert, budget, inject, recovery, expect, extra="", stuck_fix=None, checks=None, hold=0):
    """One fault row: inject, watch until `alert` fires (bounded) and at least `hold` s have
    passed, recover, wait resolved."""
    checks = checks or [check]
    say(f"{name}: injecting")
    w = Watch(checks)
    for s in inject:
        lab(s)
    w.run_until(
        max(budget + 90, hold),
        lambda w: alert in w.fired and w.first.get((check, 2)) is not None and w.now() >= hold,
    )
    w.run_until(w.now() + 2)  # settle the reasons seen with the alert
    t1, t2 = w.fail_times(check)
    t_alert = w.fired.get(alert)
    seen = ", ".join(w.seen(c) for c in checks)
    if extra:
        seen += ", " + extra(w)
    others = sorted(a for a in w.fired if a != alert)
    say(f"{name}: recovering")
    t_res, note = recover(recovery, stuck_fix=stuck_fix)
    problems = expect(w)
    if t_alert is None:
        problems.append(f"{alert} did not fire within {budget + 90} s")
    elif t_alert > budget:
        problems.append(f"{alert} fired after {t_alert:.0f} s, over the {budget} s budget")
    if t_res is None:
        problems.append("not resolved within 240 s of recovery")
    result(
        not problems,
        f"{name}: seen {seen}; 1st failed probe {secs(t1)}, 2nd {secs(t2)}, {alert} firing {secs(t_alert)}"
        f" (budget {budget} s); all resolved {secs(t_res)} after recovery"
        + (f"; also fired: {', '.join(others)}" if others else "")
        + note
        + (f" -- {'; '.join(problems)}" if problems else ""),
    )


def observe(name, inject, recovery, seconds, judge, stuck_fix=None):
    """A row without a required alert: inject, observe for `seconds`, recover."""
    say(f"{name}: injecting")
    w = Watch(list(ALL_CHECKS))
    c0 = {r: Metrics().canaries(r) for r in ("visible", "not_visible", "rejected", "timeout", "api")}
    for s in inject:
        lab(s)
    w.run_until(seconds, lambda w: judge(w, c0, final=False) is not None)
    m = w.last or Metrics()
    delta = {r: int(m.canaries(r) - c0[r]) for r in c0}
    verdict = judge(w, c0, final=True)
    say(f"{name}: recovering")
    t_res, note = recover(recovery, stuck_fix=stuck_fix)
    ok, text = verdict
    if t_res is None:
        ok = False
        text += " -- not resolved within 240 s of recovery"
    canaries = ", ".join(f"{k} {v}" for k, v in delta.items() if v)
    fails = [f"{c} {secs(w.first.get((c, 1)))}/{secs(w.first.get((c, 2)))}" for c in ALL_CHECKS if (c, 1) in w.first]
    result(
        ok,
        f"{name}: seen {', '.join(w.seen(c) for c in ALL_CHECKS if w.reasons[c]) or 'no check failing'}"
        f", {w.queue_summary()}; canaries in {w.now():.0f} s: {canaries or 'none finished'}"
        f"; 1st/2nd failed probe: {', '.join(fails) or '-/-'}"
        f"; alerts firing: {', '.join(f'{a} {t:.0f} s' for a, t in sorted(w.fired.items())) or 'none'}"
        f"; all resolved {secs(t_res)} after recovery{note}; {text}",
    )


def main():
    # ---- warm-up: every check and the canary up, and Prometheus sees them ----
    say("waiting for a healthy lab in the exporter and in Prometheus")
    t0 = time.monotonic()
    while True:
        m = Metrics()
        try:
            q = json.loads(get(f"http://{PROM}/api/v1/query?query=glitchtip_ingest_up%3D%3D1"))
            prom_ok = bool(q["data"]["result"])
        except Exception:  # noqa: BLE001
            prom_ok = False
        if m.healthy() and prom_ok:
            break
        if time.monotonic() - t0 > 240:
            result(False, f"setup: the lab did not look healthy within 240 s ({m.unhealthy_summary()})")
            return
        time.sleep(2)
    say(f"healthy after {time.monotonic() - t0:.0f} s; baseline {BASELINE} s")

    # ---- healthy baseline ----
    w = Watch(list(ALL_CHECKS))
    pending = set()

    def note_pending(w):
        pending.update(alerts("pending") or [])
        return False

    w.run_until(BASELINE, note_pending)
    fails = [c for c in ALL_CHECKS if (c, 1) in w.first]
    vis = int((w.last or Metrics()).canaries("visible"))
    lag = (w.last or Metrics()).value("glitchtip_ingest_lag_seconds", target=TARGET) or 0.0
    result(
        not w.fired and not [c for c in ALL_CHECKS if (c, 2) in w.first],
        f"healthy-baseline-{BASELINE}s: seen {', '.join(w.seen(c) for c in fails) or 'nothing failing'}"
        f", {w.queue_summary()}, canaries visible {vis} (last lag {lag:.1f} s); alerts firing:"
        f" {', '.join(w.fired) or 'none'}; pending: {', '.join(sorted(pending)) or 'none'}",
    )
    if w.fired:
        t_res = wait_resolved(120)
        if t_res is None:
            say("the lab did not settle after the baseline; the rows below may be off")

    # ---- worker stopped ----
    row(
        "worker-stopped",
        "canary",
        "GlitchTipIngestStalled",
        120,
        ["worker_stop"],
        ["worker_start"],
        lambda w: [p for p in [
            None if "not_visible" in w.ingest_reasons else f"canary reasons {w.ingest_reasons}, not not_visible",
            None if len(w.queue) >= 2 and max(w.queue) > w.queue[0] else f"queue did not grow: {w.queue}",
        ] if p],
        extra=lambda w: w.queue_summary(),
    )

    # ---- Redis down ----
    row(
        "redis-down",
        "canary",
        "GlitchTipIngestRejected",
        120,
        ["redis_stop"],
        ["redis_start"],
        lambda w: [p for p in [
            None if "rejected" in w.ingest_reasons else f"canary reasons {w.ingest_reasons}, not rejected",
            None if w.queue_reasons else "queue still readable",
        ] if p],
        extra=lambda w: w.queue_summary(),
        stuck_fix=["worker_stop", "worker_start"],
    )

    # ---- PostgreSQL down ----
    row(
        "postgres-down",
        "database",
        "GlitchTipCheckDown",
        60,
        ["pg_stop"],
        ["pg_start"],
        lambda w: [] if "timeout" in w.reasons["database"] else [f"database reasons {w.reasons['database']}, no timeout"],
        stuck_fix=["worker_stop", "worker_start"],
        checks=list(ALL_CHECKS),
        hold=75,  # the steady state: FACTS.md says the pool hangs requests ~30 s after the first second
    )

    # ---- web process down ----
    row(
        "web-down",
        "health",
        "GlitchTipInstanceUnreachable",
        60,
        ["web_stop"],
        ["web_start"],
        lambda w: [
            f"{c} reasons {w.reasons[c]}, not connect" for c in HTTP_CHECKS if "connect" not in w.reasons[c]
        ],
        checks=list(ALL_CHECKS),
    )

    # ---- beat stopped: the 5.x scheduler has no key in Redis; nothing HTTP sees changes ----
    def judge_beat(w, c0, final):
        if not final:
            return None
        claimed = [a for a in w.fired]
        failing = [c for c in ALL_CHECKS if (c, 2) in w.first]
        if claimed or failing:
            return True, f"the exporter claims: alerts {claimed or 'none'}, failing {failing or 'none'}"
        vis = int((w.last or Metrics()).canaries("visible") - c0["visible"])
        if vis == 0:
            return False, "no canary became visible while beat was stopped: the lab or exporter is off"
        return True, "GAP (documented): a stopped 5.x beat is invisible to HTTP checks, canary and queue"

    observe("beat-stopped", ["beat_stop"], ["beat_start"], 90, judge_beat)

    # ---- PostgreSQL restarted: are the events lost in the minute after seen? ----
    def judge_pg_restart(w, c0, final):
        m = w.last or Metrics()
        lost = int(m.canaries("not_visible") - c0["not_visible"])
        vis = int(m.canaries("visible") - c0["visible"])
        if not final:
            # enough: a loss seen and the canary visible again, or 120 s
            return True if (lost and vis and w.now() > 60) else None
        if lost:
            return True, f"events lost after the restart SEEN by the canary ({lost} not_visible), visible again: {vis}"
        if vis:
            return True, f"no event lost this time ({vis} canaries visible after the restart): nothing to see"
        return False, f"canary neither saw a loss nor a visible event ({w.ingest_reasons})"

    observe("postgres-restarted", ["pg_stop", "pg_start"], [], 120, judge_pg_restart,
            stuck_fix=["worker_stop", "worker_start"])

    # ---- Redis restarted quickly: ingest recovers, or the canary says it did not ----
    def judge_redis_restart(w, c0, final):
        m = w.last or Metrics()
        vis = int(m.canaries("visible") - c0["visible"])
        stalled = "GlitchTipIngestStalled" in w.fired
        if not final:
            return True if (vis and w.now() > 45) or stalled else None
        if stalled:
            return True, "ingest did NOT recover: the canary says so (GlitchTipIngestStalled)"
        if vis and m.value("glitchtip_ingest_up", target=TARGET) == 1:
            return True, f"ingest recovered ({vis} canaries visible after the restart)"
        return False, f"ingest not recovered and no alert says so ({w.ingest_reasons})"

    observe("redis-restarted", ["redis_stop", "redis_start"], [], 150, judge_redis_restart,
            stuck_fix=["worker_stop", "worker_start"])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - a crash of the driver is a failed row, not a silent pass
        result(False, f"driver: {type(e).__name__}: {e}")
    with open(os.path.join(WORK, "tally"), "w") as f:
        f.write(f"{PASSED} {FAILED}\n")
    sys.exit(1 if FAILED else 0)
