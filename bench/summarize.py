#!/usr/bin/env python3
"""Print the benchmark results as markdown tables.

    summarize.py [RESULTS_DIR]      default: bench/results

Reads what bench/run.sh wrote: the hyperfine JSON files nN_SCENARIO_rR.json,
the peak RSS files nN_rss.txt, the correctness logs nN_check.log and env.txt.
Only the standard library is used.

The rounds of one scenario are merged for each tool's median, minimum and
maximum.  A time ratio, though, is computed round by round (the median of
one tool over the median of the other, in the same hyperfine invocation) and
the rounds' ratios are combined by their geometric mean.  run.sh swaps the
sandboxes in even rounds, so with an even number of rounds this cancels any
difference between the two sandbox directories; a ratio of pooled medians
would not, when the times of one tool cluster by sandbox.
"""
import glob
import json
import math
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ("first", "noop", "parse")
TOOLS = ("cf-agent_f", "cf-agent_in", "tenet", "floor")
PARSE_TOOLS = ("cf-promises", "tenet-check")
BASELINES = ("cf-agent_f", "cf-agent_in")
# (label, N, scenario or "rss:SCENARIO", limit, aim); medians, tenet / cf-agent
TARGETS = (
    ("no-op, N=10000", 10000, "noop", 0.1, 0.05),
    ("first run, N=10000", 10000, "first", 0.1, None),
    ("no-op, N=0", 0, "noop", 0.1, None),
    ("first run, N=0", 0, "first", 0.1, None),
    ("peak RSS first run, N=10000", 10000, "rss:first", 0.5, None),
    ("peak RSS no-op, N=10000", 10000, "rss:noop", 0.5, None),
)


class Stats:
    """One command in one scenario, over all rounds."""

    def __init__(self):
        self.times = []
        self.rounds = {}
        self.user_sum = 0.0
        self.sys_sum = 0.0
        self.failed_runs = 0

    def add(self, rnd, result):
        k = len(result["times"])
        self.times.extend(result["times"])
        self.rounds.setdefault(rnd, []).extend(result["times"])
        self.user_sum += result["user"] * k
        self.sys_sum += result["system"] * k
        self.failed_runs += sum(1 for c in result.get("exit_codes", []) if c)

    @property
    def runs(self):
        return len(self.times)

    @property
    def median(self):
        return statistics.median(self.times) * 1e3

    def cell(self):
        s = "%.1f (%.1f–%.1f)" % (self.median, min(self.times) * 1e3, max(self.times) * 1e3)
        if self.failed_runs:
            s += " **%d runs failed**" % self.failed_runs
        return s

    def cpu(self):
        return "%.0f / %.0f" % (self.user_sum / self.runs * 1e3, self.sys_sum / self.runs * 1e3)


def load_timings(res):
    """{(n, scenario): {command name: Stats}}"""
    out = {}
    for path in glob.glob(os.path.join(res, "n*_*_r*.json")):
        m = re.match(r"n(\d+)_([a-z]+)_r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            data = json.load(f)
        per = out.setdefault((int(m.group(1)), m.group(2)), {})
        for r in data["results"]:
            per.setdefault(r["command"], Stats()).add(int(m.group(3)), r)
    return out


def time_ratio(per, a, b):
    """Geometric mean over rounds of median(a) / median(b) in that round."""
    if a not in per or b not in per:
        return None
    logs = [math.log(statistics.median(per[a].rounds[r]) / statistics.median(per[b].rounds[r]))
            for r in sorted(set(per[a].rounds) & set(per[b].rounds))]
    return math.exp(sum(logs) / len(logs)) if logs else None


def fmt(x):
    return "%.3f" % x if x is not None else "–"


def load_rss(res):
    """{(n, scenario): {tool: kb}}"""
    out = {}
    for path in glob.glob(os.path.join(res, "n*_rss.txt")):
        n = int(re.match(r"n(\d+)_", os.path.basename(path)).group(1))
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2].isdigit():
                    out.setdefault((n, parts[1]), {})[parts[0]] = int(parts[2])
    return out


def ratio(a, b):
    return "%.3f" % (a / b) if a is not None and b else "–"


def main():
    res = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results")
    timings = load_timings(res)
    rss = load_rss(res)
    ns = sorted({n for n, _ in timings} | {n for n, _ in rss})
    if not ns:
        sys.exit("summarize.py: no results in %s" % res)

    env = os.path.join(res, "env.txt")
    if os.path.exists(env):
        print("### Machine and versions\n")
        with open(env) as f:
            for line in f:
                print("- " + line.strip())
        print()

    print("### Wall time, ms: median (min–max)\n")
    print("tenet-agent apply parses and validates the policy on every run, like "
          "cf-agent_f; cf-agent_in skips validation while the policy is unchanged. "
          "The floor only reads what a no-op run must read; in first runs it makes the bare changes (temp file and rename, links, unlinks, one rewrite per edited file) with no policy and no fsync.\n")
    print("| N | scenario | runs | cf-agent_f | cf-agent_in | tenet | floor "
          "| tenet / _f | tenet / _in | floor / tenet |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for sc in ("first", "noop"):
            per = timings.get((n, sc))
            if not per:
                continue
            runs = "/".join(sorted({str(s.runs) for s in per.values()}))
            cells = [per[t].cell() if t in per else "–" for t in TOOLS]
            print("| %d | %s | %s | %s | %s | %s | %s |" % (
                n, "first run" if sc == "first" else "no-op", runs, " | ".join(cells),
                fmt(time_ratio(per, "tenet", "cf-agent_f")),
                fmt(time_ratio(per, "tenet", "cf-agent_in")),
                fmt(time_ratio(per, "floor", "tenet"))))
    print()

    print("### Medians by round, ms\n")
    print("Odd rounds run each tool in its own sandbox; even rounds swap the sandboxes.\n")
    print("| N | scenario | round | cf-agent_f | cf-agent_in | tenet | floor | tenet / _f | tenet / _in |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for sc in ("first", "noop"):
            per = timings.get((n, sc))
            if not per:
                continue
            for r in sorted({r for s in per.values() for r in s.rounds}):
                med = {t: statistics.median(per[t].rounds[r]) * 1e3
                       for t in per if r in per[t].rounds}
                print("| %d | %s | %d (%s) | %s | %s | %s |" % (
                    n, "first run" if sc == "first" else "no-op", r,
                    "own sandboxes" if r % 2 else "swapped",
                    " | ".join("%.1f" % med[t] if t in med else "–" for t in TOOLS),
                    ratio(med.get("tenet"), med.get("cf-agent_f")),
                    ratio(med.get("tenet"), med.get("cf-agent_in"))))
    print()

    if any(sc == "parse" for _, sc in timings):
        print("### Parse and validate only, ms: median (min–max)\n")
        print("| N | runs | cf-promises -c -f | tenet-agent check | tenet / cf-promises |")
        print("|---|---|---|---|---|")
        for n in ns:
            per = timings.get((n, "parse"))
            if not per:
                continue
            runs = "/".join(sorted({str(s.runs) for s in per.values()}))
            print("| %d | %s | %s | %s | %s |" % (
                n, runs, *(per[t].cell() if t in per else "–" for t in PARSE_TOOLS),
                fmt(time_ratio(per, "tenet-check", "cf-promises"))))
        print()

    print("### CPU, ms per run: user / sys (hyperfine means)\n")
    print("| N | scenario | cf-agent_f | cf-agent_in | tenet | floor |")
    print("|---|---|---|---|---|---|")
    for n in ns:
        for sc in SCENARIOS:
            per = timings.get((n, sc))
            if not per:
                continue
            tools = PARSE_TOOLS if sc == "parse" else TOOLS
            cells = [per[t].cpu() if t in per else "–" for t in tools]
            if sc == "parse":
                cells = [cells[0], "–", cells[1], "–"]
            label = {"first": "first run", "noop": "no-op",
                     "parse": "parse (cf-promises / tenet check)"}[sc]
            print("| %d | %s | %s |" % (n, label, " | ".join(cells)))
    print()

    if rss:
        print("### Peak RSS, KB (/usr/bin/time -v, children included)\n")
        print("| N | scenario | cf-agent_f | cf-agent_in | tenet | floor | tenet / _f | tenet / _in |")
        print("|---|---|---|---|---|---|---|---|")
        for n in ns:
            for sc in ("first", "noop"):
                per = rss.get((n, sc))
                if not per:
                    continue
                cells = [str(per[t]) if t in per else "–" for t in TOOLS]
                print("| %d | %s | %s | %s | %s |" % (
                    n, "first run" if sc == "first" else "no-op", " | ".join(cells),
                    ratio(per.get("tenet"), per.get("cf-agent_f")),
                    ratio(per.get("tenet"), per.get("cf-agent_in"))))
        print()

    print("### Targets (tenet / cf-agent)\n")
    print("Time ratios as in the first table; RSS ratios of single runs. "
          "cf-agent_f is the like-for-like comparison; cf-agent_in is the stricter one.\n")
    print("| target | limit | tenet / _f | met vs _f | tenet / _in | met vs _in |")
    print("|---|---|---|---|---|---|")
    for label, n, sc, limit, aim in TARGETS:
        row = ["%s" % label, "<= %g%s" % (limit, " (aim %g)" % aim if aim else "")]
        for base in BASELINES:
            if sc.startswith("rss:"):
                vals = rss.get((n, sc[4:]), {})
                t, b = vals.get("tenet"), vals.get(base)
                r = t / b if t is not None and b else None
            else:
                r = time_ratio(timings.get((n, sc), {}), "tenet", base)
            if r is None:
                row += ["–", "not measured"]
                continue
            verdict = "met" if r <= limit else "**not met**"
            if aim and r <= limit:
                verdict += " (aim %s)" % ("met" if r <= aim else "not met")
            row += ["%.3f" % r, verdict]
        print("| " + " | ".join(row) + " |")
    print()

    checks = sorted(glob.glob(os.path.join(res, "n*_check.log")),
                    key=lambda p: int(re.match(r"n(\d+)_", os.path.basename(p)).group(1)))
    if checks:
        print("### Correctness\n")
        for path in checks:
            n = re.match(r"n(\d+)_", os.path.basename(path)).group(1)
            with open(path) as f:
                lines = [x.strip() for x in f if x.strip()]
            verifies = [x for x in lines if x.startswith("VERIFY")]
            ok = sum(1 for x in verifies if x.startswith("VERIFY OK"))
            print("- N=%s: %d of %d checker runs passed (both sandboxes, after the "
                  "first runs, the timed batches and the RSS runs)" % (n, ok, len(verifies)))
            for x in lines:
                if x.startswith(("cf3 ", "tenet ", "cross ")):
                    print("  - " + x)
        print()


if __name__ == "__main__":
    main()
