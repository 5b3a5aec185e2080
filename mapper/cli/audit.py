"""A dry run's report on a terminal: per kind what would be put, changed, deleted, unchanged."""

from __future__ import annotations

from typing import Any

#: Diffs printed per step (the JSON output has every diff the job kept).
SHOWN_DIFFS = 3


def render_audit(reports: list[dict[str, Any]]) -> list[str]:
    lines = [] if reports else ["nothing is pending"]
    for report in reports:
        lines.append(f"{report['name']}:")
        for step in report["steps"]:
            lines.append(f"  step {step['step']}: {step['describe']}")
            lines.append(f"    {'kind':<24}{'put':>9}{'changed':>9}{'deleted':>9}{'unchanged':>11}")
            for kind, row in step["kinds"].items():
                lines.append(
                    f"    {kind:<24}{row['put']:>9}{row['changed']:>9}{row['deleted']:>9}"
                    f"{row['unchanged']:>11}"
                )
            for diff in step["diffs"][:SHOWN_DIFFS]:
                lines.append(f"    {diff['change']} {diff['key']}")
                for name, (before, after) in diff["properties"].items():
                    lines.append(f"      {name}: {before!r} -> {after!r}")
    return lines
