"""Draw the throttle tests' measured curves as small SVGs for docs/throttling.md.

The integration tests (tests/integration/test_throttle.py) write what they measured
at the RPC boundary to bench/results/throttle-*.json; this turns two of them into
docs/ramp-up.svg (per-second writes against the ramp's rule) and docs/backoff.svg
(per-second writes, with RESOURCE_EXHAUSTED injected on half the commits for 5 s).

    python -m bench.throttle_svg
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
W, H, PAD = 560, 240, 40


def per_second(events: Sequence[Sequence[float]], origin: float, seconds: int) -> list[float]:
    bins = [0.0] * seconds
    for t, n in events:
        k = int(t - origin)
        if 0 <= k < seconds:
            bins[k] += n
    return bins


def svg(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    xmax: float,
    ymax: float,
    shade: tuple[float, float] | None = None,
) -> str:
    def x(v: float) -> float:
        return PAD + v / xmax * (W - 2 * PAD)

    def y(v: float) -> float:
        return H - PAD - v / ymax * (H - 2 * PAD)

    colors = ["#1f77b4", "#d62728", "#2ca02c"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>',
    ]
    if shade:
        out.append(
            f'<rect x="{x(shade[0]):.1f}" y="{PAD}" width="{x(shade[1]) - x(shade[0]):.1f}" '
            f'height="{H - 2 * PAD}" fill="#fde0dc"/>'
        )
    out.append(f'<path d="M{PAD},{PAD} V{H - PAD} H{W - PAD}" stroke="black" fill="none"/>')
    for i in range(5):
        v = ymax * i / 4
        out.append(f'<text x="{PAD - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for s in range(0, int(xmax) + 1, 5):
        out.append(f'<text x="{x(s):.1f}" y="{H - PAD + 14}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">seconds</text>')
    out.append(
        f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" '
        'text-anchor="middle">writes / s</text>'
    )
    for i, (name, points) in enumerate(series.items()):
        path = " ".join(
            f"{'M' if j == 0 else 'L'}{x(a):.1f},{y(b):.1f}" for j, (a, b) in enumerate(points)
        )
        out.append(f'<path d="{path}" stroke="{colors[i]}" fill="none" stroke-width="1.8"/>')
        out.append(f'<text x="{PAD + 10}" y="{PAD + 14 * i + 4}" fill="{colors[i]}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def ramp_up() -> str:
    data = json.loads((RESULTS / "throttle-ramp-up.json").read_text())
    seconds = 20
    measured = per_second(data["events"], data["origin"], seconds)
    rule = data["rule"]
    step = [(0.0, rule[0])]
    for k, r in enumerate(rule):
        step += [(5.0 * k, r), (5.0 * (k + 1), r)]
    return svg(
        "ramp-up on a compressed clock: start 100/s, +50% every 5 s, 4 shards",
        {
            "rule": step[1:],
            "measured (Person mutations per second, at the RPC boundary)": [
                (k + 0.5, v) for k, v in enumerate(measured)
            ],
        },
        seconds,
        400,
    )


def backoff() -> str:
    data = json.loads((RESULTS / "throttle-backoff.json").read_text())
    rates = data["rates"]
    return svg(
        "--max-rate 400, RESOURCE_EXHAUSTED on half the commits from 4 s to 9 s",
        {"measured writes per second": [(k + 0.5, v) for k, v in enumerate(rates)]},
        len(rates),
        500,
        shade=tuple(data["faults"]),
    )


def main() -> None:
    (ROOT / "docs" / "ramp-up.svg").write_text(ramp_up())
    (ROOT / "docs" / "backoff.svg").write_text(backoff())


if __name__ == "__main__":
    main()
