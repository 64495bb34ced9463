"""Turns the raw measurements of scripts/bench.sh into one table (stdout and
bench/RESULTS.md) and a chart (bench/results.svg). Standard library only.

    report.py OUT_DIR BENCH_DIR

OUT_DIR holds variants.tsv, samples.tsv (variant, ns per operation, one line per run),
counts.tsv (callgrind and strace counts), memory.tsv and facts.tsv.
"""

import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# For each variant: the run it is compared with as "the floor", and as "no library"
# (the same work without any preloaded library).
# Per exec, the floor is an empty preloaded library: what loading any library costs.
FLOOR = {
    "s_floor": "s_floor", "s_lib": "s_floor", "s_clib": "s_floor", "s_force": "s_floor",
    "e_empty": "e_empty", "e_lib": "e_empty", "e_clib": "e_empty",
    "c_floor": "c_floor", "c_lib": "c_floor", "c_cgroup": "c_floor",
    "c_uncounted": "c_floor", "c_rules": "c_floor",
}
NO_LIBRARY = {
    "s_bare": "s_bare", "s_floor": "s_bare", "s_lib": "s_bare", "s_clib": "s_bare",
    "s_force": "s_floor",
    "s_other_bare": "s_other_bare", "s_other_lib": "s_other_bare", "s_other_clib": "s_other_bare",
    "e_bare": "e_bare", "e_empty": "e_bare", "e_lib": "e_bare", "e_clib": "e_bare",
    "c_bare": "c_bare", "c_floor": "c_bare", "c_lib": "c_bare", "c_cgroup": "c_bare",
    "c_uncounted": "c_bare", "c_rules": "c_bare",
}
TARGET = 1.02  # within 2%
CGROUP_TARGET = 1.05  # cgroup mode per connection: within 5% of the floor
# How cgroup mode reaches a row's program: a `keepalive --cgroup` run (which counts
# dead connections), a cgroup attached with `keepalive cgroup attach` whose
# counting was switched off, or a `keepalive --cgroup --rules FILE` run.
CGROUP_MODES = ("cgroup", "uncounted", "rules")


def read_rows(path):
    if not path.exists():
        return []
    return [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if line]


class Results:
    def __init__(self, out):
        self.variants = [line.split("|") for line in (out / "variants.tsv").read_text().splitlines()]
        self.labels = {v[0]: v[2] for v in self.variants}
        self.groups = {v[0]: v[1] for v in self.variants}
        # Samples in run order: the n-th sample of every variant is from round n.
        self.samples = defaultdict(list)
        for variant, ns in read_rows(out / "samples.tsv"):
            self.samples[variant].append(float(ns))
        self.counts = {(v, key): int(value) for v, key, value in read_rows(out / "counts.tsv")}
        self.faults = defaultdict(list)
        for variant, _, faults in read_rows(out / "faults.tsv"):
            self.faults[variant].append(float(faults))
        samples = defaultdict(lambda: defaultdict(list))
        for preload, field, kib in read_rows(out / "memory.tsv"):
            samples[preload][field.rstrip(":")].append(int(kib))
        self.memory = {
            preload: {field: round(statistics.median(values)) for field, values in fields.items()}
            for preload, fields in samples.items()
        }
        self.facts = dict(read_rows(out / "facts.tsv"))

    def has(self, variant):
        return variant in self.samples

    def median(self, variant):
        return statistics.median(self.samples[variant])

    def ratios(self, variant, reference):
        """Per-round ratios: each round ran both, close in time, so drifts cancel."""
        return [a / b for a, b in zip(self.samples[variant], self.samples[reference])]

    def socket_instructions(self, variant):
        low, high = self.counts.get((variant, "ir1000")), self.counts.get((variant, "ir3000"))
        return None if low is None or high is None else (high - low) / 2000

    def socket_syscalls(self, variant):
        """System calls per socket, by name, from the 1000 and 3000 iteration runs."""
        per = {}
        for (v, key), high in self.counts.items():
            if v == variant and key.startswith("sys_") and key.endswith("3000"):
                name = key[4:-4]
                low = self.counts.get((variant, f"sys_{name}1000"), 0)
                if high - low:
                    per[name] = (high - low) / 2000
        return per

    def exec_instructions(self, variant):
        return self.counts.get((variant, "ir"))

    def exec_syscalls(self, variant):
        """System calls of one start of /bin/true (strace -c)."""
        return sum(n for (v, key), n in self.counts.items() if v == variant and key.startswith("sys_"))


def median_interval(values, confidence=0.95):
    """A distribution-free confidence interval for the median (order statistics)."""
    ordered, n = sorted(values), len(values)
    k = 0
    while k + 1 <= n and binomial_below(n, k + 1) <= (1 - confidence) / 2:
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


def binomial_below(n, k):
    """P(X < k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k)) / 2**n


def fmt_ratio(results, variant, reference):
    if reference is None or not results.has(reference):
        return "—"
    if variant == reference:
        return "1"
    ratios = results.ratios(variant, reference)
    low, high = median_interval(ratios)
    return f"{statistics.median(ratios):.3f} ({low:.3f}–{high:.3f})"


def fmt_time(results, variant):
    values = results.samples[variant]
    if results.groups[variant] == "exec":
        return f"{results.median(variant) / 1000:.0f} µs", f"{min(values) / 1000:.0f}–{max(values) / 1000:.0f}"
    if results.groups[variant] == "connect":
        return f"{results.median(variant) / 1000:.1f} µs", f"{min(values) / 1000:.1f}–{max(values) / 1000:.1f}"
    return f"{results.median(variant):.0f} ns", f"{min(values):.0f}–{max(values):.0f}"


def fmt_instructions(results, variant):
    if results.groups[variant] == "connect":
        return "in the kernel (BPF)" if preload_of(results, variant) in CGROUP_MODES else "—"
    if results.groups[variant] == "exec":
        total = results.exec_instructions(variant)
        base = results.exec_instructions("e_bare")
        if total is None:
            return "—"
        text = f"{total:,}" + ("" if variant == "e_bare" or base is None else f" ({total - base:+,})")
        # Loading any library costs the same; what a library adds over an empty one,
        # counted in the same run, is its own share.
        empty = results.exec_instructions("e_empty")
        if variant in ("e_lib", "e_clib") and empty is not None:
            text += f", {total - empty:+,} over the empty .so"
        return text
    value = results.socket_instructions(variant)
    base = results.socket_instructions(NO_LIBRARY[variant])
    if value is None:
        return "—"
    delta = "" if NO_LIBRARY[variant] == variant or base is None else f" ({value - base:+.0f})"
    return f"{value:.0f}{delta}"


def fmt_syscalls(results, variant):
    if results.groups[variant] == "connect":
        if variant == "c_bare" or preload_of(results, variant) in CGROUP_MODES:
            return "socket + connect + close"
        return "socket + 4 setsockopt + connect + close"
    if results.groups[variant] == "exec":
        faults = statistics.median(results.faults[variant]) if results.faults[variant] else float("nan")
        return f"{results.exec_syscalls(variant)} system calls, {faults:.1f} page faults"
    per = results.socket_syscalls(variant)
    order = ["socket", "setsockopt", "getsockopt", "close"]
    names = sorted(per, key=lambda name: (order.index(name) if name in order else len(order), name))
    return " + ".join(f"{per[name]:g} {name}" for name in names)


def table(results):
    lines = [
        "| Measurement | Median | Min–max | vs floor | vs no library | Instructions (callgrind) | System calls (strace) |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = (
        ("socket", "**Per socket** (socket() + close())"),
        ("exec", "**Per exec** (start and exit of /bin/true)"),
        ("connect", "**Per connection** (socket() + connect() + close() on loopback, server in another process)"),
    )
    for group, title in groups:
        lines.append(f"| {title} | | | | | | |")
        for variant, *_ in results.variants:
            if results.groups[variant] != group or not results.has(variant):
                continue
            median, spread = fmt_time(results, variant)
            lines.append(
                f"| {results.labels[variant]} | {median} | {spread} "
                f"| {fmt_ratio(results, variant, FLOOR.get(variant))} "
                f"| {fmt_ratio(results, variant, NO_LIBRARY[variant])} "
                f"| {fmt_instructions(results, variant)} | {fmt_syscalls(results, variant)} |"
            )
    return "\n".join(lines)


def footprint(results):
    columns = [("none", "no library"), ("empty", "empty library"), ("lib", "this library"), ("clib", "C libkeepalive 0.3")]
    columns = [(key, name) for key, name in columns if key in results.memory]
    lines = ["| | " + " | ".join(name for _, name in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    base = results.memory.get("none", {})
    rows = (
        ("Rss", "RSS of a sleeping `sleep` (KiB, median of 3)"),
        ("Pss", "PSS (KiB)"),
        ("Private_Dirty", "Private dirty, shared with no other process (KiB)"),
    )
    for field, label in rows:
        cells = []
        for key, _ in columns:
            value, delta = results.memory[key].get(field), results.memory[key].get(field, 0) - base.get(field, 0)
            cells.append(f"{value}" + ("" if key == "none" else f" ({delta:+})"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    facts = results.facts
    for fact, label in (("size", "File size (bytes)"), ("load", "Loaded segments (bytes)"), ("deps", "Run-time dependencies (ldd)")):
        cells = [facts.get(f"{fact}_{key}", "—") if key != "none" else "—" for key, _ in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results):
    """Each target, with the numbers that decide it."""
    out = []

    def ratio(variant, reference):
        ratios = results.ratios(variant, reference)
        return statistics.median(ratios), median_interval(ratios)

    def line(name, met, detail):
        out.append(f"- {name}: **{'met' if met else 'missed'}**. {detail}")

    if results.has("s_lib") and results.has("s_floor"):
        r, (lo, hi) = ratio("s_lib", "s_floor")
        extra = results.socket_instructions("s_lib") - results.socket_instructions("s_floor")
        line("Per socket within 2% of the floor", r <= TARGET,
             f"this library / floor = {r:.3f} (95% interval of the median {lo:.3f}–{hi:.3f}); "
             f"same system calls, {extra:+.0f} user-space instructions per socket.")
    if results.has("s_lib") and results.has("s_clib"):
        r, (lo, hi) = ratio("s_lib", "s_clib")
        ours, theirs = results.socket_instructions("s_lib"), results.socket_instructions("s_clib")
        line("Per socket faster than the C library", r < 1 and ours < theirs,
             f"this library / C library = {r:.3f} ({lo:.3f}–{hi:.3f}); "
             f"{ours:.0f} against {theirs:.0f} instructions per socket.")
    if results.has("e_lib") and results.has("e_bare"):
        r, (lo, hi) = ratio("e_lib", "e_bare")
        extra = results.exec_instructions("e_lib") - results.exec_instructions("e_bare")
        line("Per exec within 2% of no library", r <= TARGET,
             f"this library / no library = {r:.3f} ({lo:.3f}–{hi:.3f}); {extra:+,} instructions per start.")
    if results.has("e_lib") and results.has("e_empty"):
        r, (lo, hi) = ratio("e_lib", "e_empty")
        floor = ratio("e_empty", "e_bare")[0]
        extra = results.exec_instructions("e_lib") - results.exec_instructions("e_empty")
        out.append(
            f"- Of that, loading any library (an empty one) costs {floor:.3f} × no library; this library "
            f"/ empty library = {r:.3f} ({lo:.3f}–{hi:.3f}), {extra:+,} instructions per start."
        )
    if results.has("e_lib") and results.has("e_clib"):
        r, (lo, hi) = ratio("e_lib", "e_clib")
        ours, theirs = results.exec_instructions("e_lib"), results.exec_instructions("e_clib")
        line("Per exec no slower than the C library", r <= 1,
             f"this library / C library = {r:.3f} ({lo:.3f}–{hi:.3f}); "
             f"{ours:,} against {theirs:,} instructions per start, "
             f"{results.exec_syscalls('e_lib')} against {results.exec_syscalls('e_clib')} system calls "
             "(the C library also loads libdl.so.2).")
    if results.has("s_other_lib") and results.has("s_other_bare"):
        r, (lo, hi) = ratio("s_other_lib", "s_other_bare")
        extra = results.socket_instructions("s_other_lib") - results.socket_instructions("s_other_bare")
        line("Non-TCP sockets at no measurable cost", lo <= 1 <= hi or r <= 1,
             f"this library / no library = {r:.3f} ({lo:.3f}–{hi:.3f}); {extra:+.0f} instructions per socket, "
             "no extra system call.")
    if results.has("c_cgroup") and results.has("c_floor"):
        r, (lo, hi) = ratio("c_cgroup", "c_floor")
        preload = ratio("c_lib", "c_floor")[0] if results.has("c_lib") else float("nan")
        line("Per connection, cgroup mode within 5% of the floor", r <= CGROUP_TARGET,
             f"cgroup mode / floor = {r:.3f} ({lo:.3f}–{hi:.3f}); preload mode / floor = {preload:.3f}. "
             "Cgroup mode adds no system call and nothing to exec: its programs run in the kernel, "
             "once at connect.")
    if results.has("c_cgroup") and results.has("c_uncounted"):
        r, (lo, hi) = ratio("c_cgroup", "c_uncounted")
        line("Counting dead connections within 2% of cgroup mode without it", r <= TARGET,
             f"counting (d) / counting switched off (e) = {r:.3f} ({lo:.3f}–{hi:.3f}): the same "
             "build, e attached with `keepalive cgroup attach` and its on_error_link pin removed, "
             "so that its counting program is on no tracepoint; d's link exists only while its "
             "run does. The counting program runs only when a socket reports an error, and these "
             "connections end with a reset (SO_LINGER 0), which reports one: it returns at once.")
    if results.has("c_rules") and results.has("c_cgroup"):
        r, (lo, hi) = ratio("c_rules", "c_cgroup")
        line("Rules within 2% of cgroup mode without rules", r <= TARGET,
             f"16 rules cost {r:.3f} ({lo:.3f}–{hi:.3f}) over cgroup mode without rules; target at "
             f"most {TARGET}. With rules (f) / without (d): both `keepalive --cgroup` runs, f with "
             "--rules FILE of 16 rules of one peer CIDR and one port each, its connections matching "
             "the last, whose timings they must report (the run's own are others). The program "
             "matches a new connection with two trie lookups, by peer and by port, whatever the "
             "number of rules.")
    return "\n".join(out)


def machine(results):
    f = results.facts
    return (
        f"{f.get('cpu', '?')}, {f.get('cores', '?')} cores, {f.get('os', '?')}, Linux {f.get('kernel', '?')}, "
        f"{f.get('libc', '?')}; {f.get('rustc', '?')}. Commit {f.get('commit', '?')}, {f.get('date', '?')}, "
        f"load average before the run {f.get('load', '?')}. {f.get('rounds', '?')} rounds; a socket run is "
        f"{f.get('socket_run', '?')} sockets (median of batches of 100), an exec run {f.get('exec_run', '?')} "
        f"starts (median), a connection run {f.get('connect_run', '?')} connections (median of batches "
        f"of 50); CPU pinning: {f.get('pinned', 'no')}."
    )


def chart(results):
    """Horizontal bars (median) with min–max whiskers, one panel per group."""
    width, label_width, bar_width, row, top = 900, 430, 400, 26, 30
    panels = [
        ("socket", "ns per socket() + close()", 1),
        ("exec", "µs per start of /bin/true", 1000),
        ("connect", "µs per connection on loopback", 1000),
    ]
    parts, y = [], top
    for group, title, unit in panels:
        ids = [v[0] for v in results.variants if v[1] == group and results.has(v[0])]
        if not ids:
            continue
        scale = bar_width / max(max(results.samples[v]) for v in ids)
        parts.append(f'<text x="10" y="{y}" font-weight="bold">{title}</text>')
        y += 10
        for variant in ids:
            median, low, high = results.median(variant), min(results.samples[variant]), max(results.samples[variant])
            colour = {"none": "#9e9e9e", "empty": "#d7b56d", "lib": "#2e7d32", "clib": "#1565c0",
                      "cgroup": "#6a1b9a", "uncounted": "#6a1b9a", "rules": "#6a1b9a"}[preload_of(results, variant)]
            parts.append(f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{escape(results.labels[variant])}</text>')
            parts.append(f'<rect x="{label_width}" y="{y + 4}" width="{median * scale:.1f}" height="16" fill="{colour}"/>')
            mid = y + 12
            parts.append(f'<line x1="{label_width + low * scale:.1f}" x2="{label_width + high * scale:.1f}" y1="{mid}" y2="{mid}" stroke="black"/>')
            parts.append(f'<text x="{label_width + high * scale + 6:.1f}" y="{y + 16}">{median / unit:,.1f}</text>')
            y += row
        y += 30
    legend = '<text x="10" y="{}" font-size="11">grey: no library · sand: empty library · green: this library · blue: C libkeepalive 0.3 · purple: cgroup mode · bar: median · line: min–max over rounds</text>'.format(y - 10)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + legend + "</svg>\n"
    )


def preload_of(results, variant):
    return next(v[3] for v in results.variants if v[0] == variant)


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    out, bench = Path(sys.argv[1]), Path(sys.argv[2])
    results = Results(out)
    report = "\n\n".join([
        "## Time and instructions", table(results),
        "Floor: per socket and per connection, the program setting the four options itself (b); per "
        "exec, an empty preloaded library. Ratios are medians of per-round ratios (each round runs every variant once), "
        "with a 95% interval of that median in brackets. Instructions are user-space only (callgrind): "
        "per socket (difference from no library in brackets), and for a whole start of /bin/true "
        "(difference from no library). System calls: per socket, or per start of /bin/true, with the "
        "page faults of a start.",
        "## Targets", verdicts(results),
        "## Size and memory", footprint(results),
        "## Machine", machine(results),
    ])
    print(report)
    (bench / "RESULTS.md").write_text(
        "# Benchmark results\n\nWritten by `scripts/bench.sh`; chart: [results.svg](results.svg).\n\n" + report + "\n"
    )
    (bench / "results.svg").write_text(chart(results))


if __name__ == "__main__":
    main()
