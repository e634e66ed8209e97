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


def _cell(summary) -> str:
    if summary.status == "fail":
        return "FAIL" if summary.worst_units is None else f"FAIL {_units(summary.worst_units)}"
    if summary.status == "skip":
        return "skip"
    return "ok" if summary.worst_units is None else _units(summary.worst_units)


def summary_table(reports) -> str:
    """One row per layer and dtype, one column per check: worst tolerance units, 'ok', 'skip' or FAIL."""
    from .checks import CHECKS

    rows = []
    for report in reports:
        for dtype in dict.fromkeys(c.dtype for c in report.checks):
            by_check = {c.check: c for c in report.checks if c.dtype == dtype}
            examples = max((c.examples + c.skipped for c in by_check.values()), default=0)
            failed = any(c.status == "fail" for c in by_check.values())
            rows.append((report.name, dtype, examples, *(_cell(by_check[c]) if c in by_check else "-" for c in CHECKS),
                         "FAIL" if failed else "pass"))
    text = table(("layer", "dtype", "examples", *CHECKS, "status"), rows)
    legend = ("cells: worst error in tolerance units (1 = at the bound), 'ok' for a yes/no check, "
              "'skip' where it never applied")
    details = [failure_text(f) for report in reports for f in report.failures]
    notes = sorted({f"{r.name} {c.check}: {c.note}" for r in reports for c in r.checks
                    if c.status == "skip" and c.note})
    parts = [text, legend]
    if notes:
        parts.append("Skipped:\n" + "\n".join(f"  {n}" for n in notes))
    if details:
        parts.append("Failures (minimal examples after shrinking):\n" + "\n\n".join(details))
    return "\n\n".join(parts)


def kill_matrix(rows) -> tuple[str, dict]:
    """rows: (name, Mutant or Variant, LayerReport). Returns the matrix as text and as a dict."""
    from .checks import CHECKS
    from .layer import Mutant

    lines, records = [], []
    for name, replacement, report in rows:
        failed = {c.check for c in report.checks if c.status == "fail"} | {f.check for f in report.failures}
        shrunk = report.failures[0].shapes if report.failures else ()
        size = sum(math.prod(s) for s in shrunk)
        is_mutant = isinstance(replacement, Mutant)
        verdict = ("killed" if failed else "SURVIVED") if is_mutant else ("accepted" if not failed else "REJECTED")
        lines.append((name, "mutant" if is_mutant else "variant", *("x" if c in failed else "." for c in CHECKS),
                      size if failed else "-", verdict))
        records.append({"name": name, "kind": "mutant" if is_mutant else "variant",
                        "description": replacement.description, "rejected_by": sorted(failed),
                        "shrunk_shapes": [list(s) for s in shrunk], "shrunk_size": size, "verdict": verdict})
    text = table(("mutant", "kind", *CHECKS, "shrunk size", "verdict"), lines)
    mutants = [r for r in records if r["kind"] == "mutant"]
    variants = [r for r in records if r["kind"] == "variant"]
    summary = {
        "mutants": len(mutants), "killed": sum(r["verdict"] == "killed" for r in mutants),
        "variants": len(variants), "accepted": sum(r["verdict"] == "accepted" for r in variants),
        "survivors": [r["name"] for r in mutants if r["verdict"] == "SURVIVED"],
        "false_alarms": [r["name"] for r in variants if r["verdict"] == "REJECTED"],
        "matrix": records,
    }
    legend = "x: the check rejected the mutant on some example; shrunk size: elements in the minimal failing example"
    return text + "\n\n" + legend, summary


def failure_text(f) -> str:
    lines = [f"  {f.layer} [{f.dtype}] {f.check} failed" + (f" on {f.gradient}" if f.gradient else "")]
    lines.append(f"    shapes {', '.join(str(s) for s in f.shapes)}; hyper {f.hyper if f.hyper else '{}'}")
    if f.message:
        lines.append(f"    {f.message}")
    if f.diagnosis:
        lines.append(f"    likely bug: {f.diagnosis}")
    if f.arrays is not None:
        for i, a in enumerate(f.arrays):
            lines.append(f"    input {i}: {a.tolist()}")
    lines.append(f"    reproduce: {f.reproducer}")
    return "\n".join(lines)
