"""Reports for people (a table) and for programs (JSON)."""
from __future__ import annotations

import math


def _units(value) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def layer_table(reports) -> str:
    rows = []
    for report in reports:
        for c in report.checks:
            rows.append((report.name, c.check, c.dtype, c.examples, _units(c.worst_units),
                         c.status.upper() if c.status == "fail" else c.status))
    text = table(("layer", "check", "dtype", "examples", "worst (tol units)", "status"), rows)
    details = [failure_text(f) for report in reports for f in report.failures]
    notes = sorted({f"{r.name} {c.check}: {c.note}" for r in reports for c in r.checks if c.status == "skip" and c.note})
    parts = [text]
    if notes:
        parts.append("Skipped:\n" + "\n".join(f"  {n}" for n in notes))
    if details:
        parts.append("Failures (minimal examples after shrinking):\n" + "\n\n".join(details))
    return "\n\n".join(parts)


def failure_text(f) -> str:
    lines = [f"  {f.layer} [{f.dtype}] {f.check} failed" + (f" on {f.gradient}" if f.gradient else "")]
    lines.append(f"    shapes {', '.join(str(s) for s in f.shapes)}; hyper {f.hyper if f.hyper else '{}'}")
    if f.message:
        lines.append(f"    {f.message}")
    if f.arrays is not None:
        for i, a in enumerate(f.arrays):
            lines.append(f"    input {i}: {a.tolist()}")
    lines.append(f"    reproduce: {f.reproducer}")
    return "\n".join(lines)
