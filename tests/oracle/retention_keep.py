#!/usr/bin/env python3
"""Independent oracle for snapsched's retention planner (restic's keep rules).

Reads one JSON case a line on stdin:
  {"zone": "Europe/Bratislava", "now": <epoch s>, "max_age": <s or null>,
   "keep": {"last": n, "hourly": n, "daily": n, "weekly": n, "monthly": n,
            "yearly": n, "within": <s or null>},
   "times": [<epoch s>, ...]}            # own ready snapshots, any order
and writes one JSON line per case: [[keep, [reason, ...]], ...] for the
snapshots ordered oldest first.

Written from the rules as documented, with Python's zoneinfo for the
calendar, so that it shares no code with the Rust planner.
"""

import json
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

RULES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"]


def fmt_duration(secs):
    if secs == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            parts.append(f"{secs // size}{unit}")
            secs %= size
    return " ".join(parts)


def bucket(rule, index, t, zone):
    local = datetime.fromtimestamp(t, tz=timezone.utc).astimezone(zone)
    if rule == "last":
        return index
    if rule == "hourly":
        return (local.date(), local.hour, local.utcoffset())
    if rule == "daily":
        return local.date()
    if rule == "weekly":
        iso = local.isocalendar()
        return (iso[0], iso[1])
    if rule == "monthly":
        return (local.year, local.month)
    return local.year


def rules_text(keep):
    parts = [f"{r} {keep[r]}" for r in RULES if keep[r] > 0]
    if keep["within"] is not None:
        parts.append(f"within {fmt_duration(keep['within'])}")
    return ", ".join(parts) if parts else "no rule"


def decide(case):
    zone = ZoneInfo(case["zone"])
    keep = case["keep"]
    max_age = case["max_age"]
    now = case["now"]
    times = sorted(case["times"], reverse=True)  # newest first
    kept_by = [[] for _ in times]
    for rule in RULES:
        n = keep[rule]
        if n == 0:
            continue
        count, last = 0, None
        for i, t in enumerate(times):
            if count == n:
                break
            b = bucket(rule, i, t, zone)
            if b != last:
                count += 1
                last = b
                kept_by[i].append(f"{rule} {count}/{n}")
    if keep["within"] is not None and times:
        for i, t in enumerate(times):
            if times[0] - t < keep["within"]:
                kept_by[i].append(f"within {fmt_duration(keep['within'])} of the newest")

    all_off = all(keep[r] == 0 for r in RULES) and keep["within"] is None
    count_only = keep["last"] > 0 and all(keep[r] == 0 for r in RULES[1:]) and keep["within"] is None
    out = []
    for i, t in enumerate(times):
        old = max_age is not None and now - t > max_age
        older = [f"older than max_age {fmt_duration(max_age)}"] if old else []
        rules = ["retention 0 keeps all"] if all_off else kept_by[i]
        if i == 0:
            out.append([True, ["newest ready snapshot"] + kept_by[i] + older])
        elif not rules:
            why = f"beyond retention {keep['last']}" if count_only else f"kept by no rule ({rules_text(keep)})"
            out.append([False, [why] + older])
        elif old:
            out.append([False, older])
        else:
            within_age = [f"within max_age {fmt_duration(max_age)}"] if max_age is not None else []
            out.append([True, rules + within_age])
    out.reverse()
    return out


def main():
    cases = [json.loads(line) for line in sys.stdin.read().splitlines() if line.strip()]
    for case in cases:
        sys.stdout.write(json.dumps(decide(case)) + "\n")


if __name__ == "__main__":
    main()
