#!/usr/bin/env python3
"""Draws the README's benchmark chart from measure.py results.

    chart.py OUT.svg RESULT.json [RESULT.json ...]

Each RESULT.json is what `measure.py --save PREFIX` writes for one `loadgen lock --conns N` run
(server A = dflockd, server B = the floor server). The chart has two panels against the number
of connections: throughput (ops/s), and p50/p99 latency of one acquire+release (µs, log scale).
Medians over the pairs are plotted. Standard library only.
"""
import json
import math
import sys

W, H = 900, 380
PANEL_W, PANEL_H = 380, 260
MARGIN_L, MARGIN_T = 70, 50
COLORS = {"dflockd": "#1f77b4", "floor": "#7f7f7f"}


def load(paths):
    series = {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        args = doc["loadgen_args"]
        conns = int(args[args.index("--conns") + 1])
        for side in ("a", "b"):
            name = doc[side]["name"]
            med = doc["medians"][name]
            series.setdefault(name, []).append((conns, med["ops_s"], med["p50_us"], med["p99_us"]))
    for points in series.values():
        points.sort()
    return series


def nice_max(v):
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def panel(out, x0, title, xs, ylabel, lines, log_y):
    """lines: list of (label, color, dash, [(x, y)])."""
    ys = [y for _, _, _, pts in lines for _, y in pts if y]
    if log_y:
        lo = 10 ** math.floor(math.log10(min(ys)))
        hi = 10 ** math.ceil(math.log10(max(ys)))
        fy = lambda y: MARGIN_T + PANEL_H - (math.log10(y) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * PANEL_H
        ticks = [lo * 10 ** i for i in range(int(round(math.log10(hi / lo))) + 1)]
    else:
        hi = nice_max(max(ys))
        fy = lambda y: MARGIN_T + PANEL_H - y / hi * PANEL_H
        ticks = [hi * i / 5 for i in range(6)]
    # x: log scale over the connection counts
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    fx = lambda x: x0 + (math.log10(x) - lx0) / ((lx1 - lx0) or 1) * PANEL_W
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T - 20}" text-anchor="middle" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#ccc"/>')
    for t in ticks:
        y = fy(t)
        label = f"{t / 1000:g}k" if t >= 1000 else f"{t:g}"
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + PANEL_W}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
    for x in xs:
        out.append(f'<text x="{fx(x):.1f}" y="{MARGIN_T + PANEL_H + 16}" text-anchor="middle" font-size="11">{x}</text>')
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T + PANEL_H + 34}" text-anchor="middle" font-size="12">connections</text>')
    out.append(f'<text x="{x0 - 52}" y="{MARGIN_T + PANEL_H / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {x0 - 52} {MARGIN_T + PANEL_H / 2})">{ylabel}</text>')
    for label, color, dash, pts in lines:
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts if y)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        for x, y in pts:
            if y:
                out.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{color}"/>')
    return fy


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    series = load(sys.argv[2:])
    xs = sorted({c for pts in series.values() for c, *_ in pts})
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    thr = [(name, COLORS.get(name, "#d62728"), "", [(c, ops) for c, ops, _, _ in pts]) for name, pts in series.items()]
    panel(out, MARGIN_L, "Throughput (acquire+release per second)", xs, "ops/s", thr, False)
    lat = []
    for name, pts in series.items():
        color = COLORS.get(name, "#d62728")
        lat.append((f"{name} p50", color, "", [(c, p50) for c, _, p50, _ in pts]))
        lat.append((f"{name} p99", color, "6,4", [(c, p99) for c, _, _, p99 in pts]))
    x1 = MARGIN_L + PANEL_W + 90
    panel(out, x1, "Latency of one acquire+release", xs, "µs (log scale)", lat, True)
    # legend
    ly = H - 22
    lx = MARGIN_L
    for label, color, dash in [(n, COLORS.get(n, "#d62728"), "") for n in series] + [("p99 (dashed)", "#000", "6,4")]:
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}" font-size="12">{label}</text>')
        lx += 170
    out.append("</svg>")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
