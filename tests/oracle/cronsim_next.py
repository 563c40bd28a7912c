#!/usr/bin/env python3
"""Next fire times from cronsim, the reference for Debian cron semantics.

Reads JSON lines on stdin, one case each:
    {"id": 7, "expr": "30 2 * * *", "tz": "Europe/Bratislava",
     "after": 1774746000, "n": 6, "add_seconds": 0}
and writes one JSON line per case on stdout:
    {"id": 7, "times": [1774746000, ...], "end": "count"}

"times" are Unix seconds strictly after "after", plus "add_seconds" (used to
compare six-field fixed-time schedules, whose DST handling cronsim applies
only to five-field expressions). "end" says why the list stopped:
  count      -- n times were produced;
  exhausted  -- cronsim found nothing within its 50-year horizon;
  imaginary  -- cronsim produced a local time that does not exist (a known
                cronsim quirk for interval jobs when a day starts in a DST
                gap, e.g. America/Santiago); later times are not comparable;
  backwards  -- cronsim returned a time before the previous one for an
                interval job: asked from the second pass of a repeated range
                that does not start on a full hour (Pacific/Chatham 02:45,
                Australia/Lord_Howe 01:30), its "back to minute 0 of the hour"
                step lands before the transition, in the first pass. It may
                then loop forever, hence also:
  timeout    -- cronsim did not answer within two seconds;
  error      -- cronsim refused the expression ("message" holds why);
  brute      -- see below;
  half-hour  -- see below.

cronsim steps interval jobs hour by hour in UTC from minute 0 of the local
hour. Across a transition whose local time is not on a full hour (Lord
Howe's 30-minute shift, Chatham's 02:45) that lands on :30 or :45, or before
the transition, so it skips or repeats times that do occur; when a day
starts inside a gap (America/Santiago, 00:00 -> 01:00) it steps from the
nonexistent midnight and skips the first real hour. For interval
jobs the helper therefore uses cronsim only up to two hours before such a
transition ("odd_transitions" in the case) and from a day after it, and in
between a plain scan, minute by minute through real time, of which instants
have a local time matching cronsim's own parsed fields: the spec's rule
written out literally ("brute"). A six-field interval job there is not
scanned (per second would be slow): its answer stops short ("half-hour").

A fixed-time job asked from inside the second pass of a repeated hour yields
from cronsim the first occurrence, which is already past; as our contract is
"strictly after", such times are dropped rather than reported.
"""

import json
import signal
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError


def is_imaginary(dt):
    return dt != dt.astimezone(timezone.utc).astimezone(dt.tzinfo)


class Timeout(Exception):
    pass


def on_alarm(_signum, _frame):
    raise Timeout()


class Stop(Exception):
    def __init__(self, end):
        super().__init__(end)
        self.end = end


def cronsim_times(expr, tz, after, n, limit, fixed_only=False):
    """cronsim's times after `after`, up to `limit` (inclusive) if given."""
    it = CronSim(expr, datetime.fromtimestamp(after, tz=tz))
    fixed_time = it.fixup_tz is not None
    times = []
    last = after
    while len(times) < n:
        try:
            dt = next(it)
        except StopIteration:
            raise Stop("exhausted")
        if is_imaginary(dt):
            raise Stop("imaginary")
        t = int(dt.timestamp())
        if t <= last:
            if fixed_time and t <= after:
                continue
            raise Stop("backwards")
        if limit is not None and t > limit:
            break
        last = t
        times.append(t)
    return times


def scan(expr, tz, lo, hi):
    """Interval semantics written out: every whole minute in (lo, hi] whose
    local time matches cronsim's parsed fields."""
    it = CronSim(expr, datetime.fromtimestamp(lo, tz=tz))
    if it.seconds != {0}:
        raise Stop("half-hour")
    times = []
    t = (lo // 60 + 1) * 60
    while t <= hi:
        dt = datetime.fromtimestamp(t, tz=tz)
        if (
            dt.minute in it.minutes
            and dt.hour in it.hours
            and dt.month in it.months
            and it.match_day(dt.date())
        ):
            times.append(t)
        t += 60
    return times


def interval_times(expr, tz, after, n, odd):
    """cronsim away from irregular transitions, the scan across them."""
    times = []
    cursor = after
    end = "count"
    while len(times) < n:
        upcoming = [t for t in odd if t > cursor - 7200]
        nxt = min(upcoming) if upcoming else None
        limit = nxt - 7200 if nxt is not None else None
        if limit is None or limit > cursor:
            times += cronsim_times(expr, tz, cursor, n - len(times), limit)
        if len(times) >= n or nxt is None:
            break
        end = "brute"
        lo = max(cursor, limit)
        cursor = nxt + 86400
        times += scan(expr, tz, lo, cursor)
    return times[:n], end


def run(case):
    name = case["tz"]
    tz = timezone.utc if name == "UTC" else ZoneInfo(name)
    after = int(case["after"])
    out = {"id": case["id"], "times": [], "end": "count"}
    try:
        it = CronSim(case["expr"], datetime.fromtimestamp(after, tz=tz))
    except CronSimError as e:
        out["end"] = "error"
        out["message"] = str(e)
        return out
    odd = case.get("odd_transitions", []) if name != "UTC" else []
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        if it.fixup_tz is None and odd:
            times, out["end"] = interval_times(case["expr"], tz, after, case["n"], odd)
        else:
            times = cronsim_times(case["expr"], tz, after, case["n"], None)
        out["times"] = times
    except Stop as e:
        out["end"] = e.end
    except Timeout:
        out["end"] = "timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    out["times"] = [t + int(case.get("add_seconds", 0)) for t in out["times"]]
    return out


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    for line in sys.stdin:
        line = line.strip()
        if line:
            sys.stdout.write(json.dumps(run(json.loads(line))) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
