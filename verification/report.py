"""Reports for people (tables, one block per distinct failure, notes said once) and for
programs (JSON, from the reports' ``to_dict``)."""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from .checks import CHECKS
from .layer import BUG_CLASSES


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


def _cell(summary) -> str:
    if summary.status == "fail":
        word = {"wrong": "WRONG", "contract": "CONTRACT", "inaccurate": "INACCURATE", "spec": "SPEC?"}[summary.tier]
        return word if summary.worst_units is None else f"{word} {_units(summary.worst_units)}"
    if summary.status == "skip":
        return "skip"
    return "ok" if summary.worst_units is None else _units(summary.worst_units)


LEGEND = ("cells: worst error in tolerance units (1 = at the bound), 'ok' for a yes/no check, 'skip' where it "
          "never applied; a failing cell says its tier: WRONG (the derivative), CONTRACT (shape, dtype, in place, "
          "aliasing, layout, a crash on an edge case), INACCURATE (a right formula that loses digits), SPEC? (the "
          "oracles disagree: the specification is suspect)")


def summary_table(reports) -> str:
    """One row per layer and dtype, one column per check; then coverage, notes and failures."""
    rows = []
    for report in reports:
        for dtype in dict.fromkeys(c.dtype for c in report.checks):
            by_check = {c.check: c for c in report.checks if c.dtype == dtype}
            tiers = {c.tier for c in by_check.values() if c.status == "fail"}
            verdict = next((t for t in ("spec", "wrong", "contract", "inaccurate") if t in tiers), "pass")
            rows.append((report.name, dtype, report.examples(dtype), len(report.configurations),
                         *(_cell(by_check[c]) if c in by_check else "-" for c in CHECKS),
                         verdict.upper() if verdict != "pass" else "pass"))
    parts = [table(("layer", "dtype", "examples", "configs", *CHECKS, "verdict"), rows), LEGEND]
    coverage = [(r.name, len(r.configurations), r.coverage) for r in reports if r.configurations]
    if coverage:
        parts.append("Configurations explored:\n" + "\n".join(
            f"  {name}: {count} distinct; {span}" for name, count, span in coverage))
    notes = notes_text(reports)
    if notes:
        parts.append(notes)
    details = [failure_text(f) for report in reports for f in report.failures]
    if details:
        parts.append("Failures (minimal examples after shrinking, one block per distinct failure):\n"
                     + "\n\n".join(details))
    return "\n\n".join(parts)


def layer_text(report) -> str:
    """``str(report)``: the summary of one layer, with its verdict."""
    head = f"{report.name}: {report.verdict.upper() if report.verdict != 'pass' else 'pass'}"
    if report.require != "contract":
        head += f" (require={report.require!r}: {'passed' if report.passed else 'failed'})"
    return head + "\n\n" + summary_table([report])


def notes_text(reports) -> str:
    """Each distinct note once, with the checks and layers it concerns and how often it applied."""
    grouped: dict[str, dict] = defaultdict(lambda: {"checks": set(), "layers": set(), "count": 0})
    for report in reports:
        for c in report.checks:
            for message, count in c.notes.items():
                entry = grouped[message]
                entry["checks"].add(c.check)
                entry["layers"].add(report.name)
                entry["count"] += count
    lines = []
    for message, entry in sorted(grouped.items(), key=lambda kv: (sorted(kv[1]["checks"]), kv[0])):
        layers = entry["layers"]
        where = next(iter(layers)) if len(layers) == 1 else f"{len(layers)} layers"
        lines.append(f"  {', '.join(sorted(entry['checks'], key=list(CHECKS).index))} ({where}, "
                     f"{entry['count']} times): {message}")
    return "Notes:\n" + "\n".join(lines) if lines else ""


def _array(a) -> str:
    return np.array2string(np.asarray(a), precision=6, separator=", ", threshold=64, max_line_width=100).replace(
        "\n", "\n      ")


def failure_text(f) -> str:
    lines = [f"  {f.layer}: {f.tier.upper()}" + (f" ({f.bug}: {BUG_CLASSES[f.bug]})" if f.bug in BUG_CLASSES else "")]
    if f.diagnosis:
        lines.append(f"    likely bug: {f.diagnosis}")
    hits = Counter((h["check"], h["tier"]) for h in f.hits)
    by_check = defaultdict(list)
    for h in f.hits:
        by_check[h["check"]].append(h["dtype"])
    lines.append("    failed: " + "; ".join(f"{check} ({', '.join(dict.fromkeys(dtypes))})"
                                            for check, dtypes in by_check.items()) if hits else "    failed: -")
    lines.append(f"    shapes {', '.join(str(s) for s in f.shapes)}; hyper {_hyper(f.hyper)}")
    if f.message:
        lines.append(f"    {f.check} [{f.dtype}]: {f.message}")
    if f.arrays is not None:
        for i, a in enumerate(f.arrays):
            lines.append(f"    input {i}: {_array(a)}")
    if f.douts is not None:
        for d in f.douts:
            lines.append(f"    dY: {_array(d)}")
    if f.reproducer:
        lines.append(f"    reproduce: {f.reproducer}")
    return "\n".join(lines)


def _hyper(hyper) -> str:
    if not hyper:
        return "{}"
    parts = []
    for key, value in hyper.items():
        shown = _array(value) if isinstance(value, np.ndarray) and value.size <= 16 else (
            f"<array {value.shape}>" if isinstance(value, np.ndarray) else repr(value))
        parts.append(f"{key}={shown}")
    return "{" + ", ".join(parts) + "}"


def kill_matrix(rows) -> tuple[str, dict]:
    """rows: (name, Mutant or Variant, LayerReport). The matrix as text, and as a dict with the
    diagnosis accuracy (the headline's bug class against each mutant's declared class)."""
    from .layer import Mutant

    lines, records = [], []
    for name, replacement, report in rows:
        failed = {c.check for c in report.checks if c.status == "fail"} | {h["check"] for f in report.failures
                                                                            for h in f.hits}
        headline = max(report.failures, key=lambda f: ("pass", "inaccurate", "contract", "wrong", "spec").index(
            f.tier), default=None)
        shrunk = headline.shapes if headline else ()
        size = sum(math.prod(s) for s in shrunk)
        is_mutant = isinstance(replacement, Mutant)
        verdict = ("killed" if failed else "SURVIVED") if is_mutant else ("accepted" if not failed else "REJECTED")
        declared = replacement.bug if is_mutant else ""
        diagnosed = headline.bug if headline else ""
        right = is_mutant and failed and diagnosed == declared
        lines.append((name, "mutant" if is_mutant else "variant", *("x" if c in failed else "." for c in CHECKS),
                      size if failed else "-", report.verdict if failed else "-",
                      f"{declared}{'' if not is_mutant else ' = ' if right else ' != '}{diagnosed if is_mutant else ''}",
                      verdict))
        records.append({"name": name, "kind": "mutant" if is_mutant else "variant",
                        "description": replacement.description, "rejected_by": sorted(failed),
                        "shrunk_shapes": [list(s) for s in shrunk], "shrunk_size": size, "verdict": verdict,
                        "tier": report.verdict, "declared_bug": declared or None, "diagnosed_bug": diagnosed or None,
                        "diagnosis": headline.diagnosis if headline else None})
    text = table(("mutant", "kind", *CHECKS, "shrunk size", "tier", "declared = diagnosed", "verdict"), lines)
    mutants = [r for r in records if r["kind"] == "mutant"]
    variants = [r for r in records if r["kind"] == "variant"]
    scored = [r for r in mutants if r["verdict"] == "killed"]
    confusion = Counter((r["declared_bug"], r["diagnosed_bug"]) for r in scored if r["declared_bug"] != r["diagnosed_bug"])
    correct = sum(r["declared_bug"] == r["diagnosed_bug"] for r in scored)
    summary = {
        "mutants": len(mutants), "killed": sum(r["verdict"] == "killed" for r in mutants),
        "variants": len(variants), "accepted": sum(r["verdict"] == "accepted" for r in variants),
        "survivors": [r["name"] for r in mutants if r["verdict"] == "SURVIVED"],
        "false_alarms": [r["name"] for r in variants if r["verdict"] == "REJECTED"],
        "diagnosis": {"right": correct, "scored": len(scored),
                      "accuracy": round(correct / len(scored), 4) if scored else None,
                      "confusion": [{"declared": d, "diagnosed": g, "count": n} for (d, g), n in confusion.most_common()]},
        "matrix": records,
    }
    legend = ("x: the check rejected the mutant on some example; shrunk size: elements in the minimal failing example; "
              "declared = diagnosed: the mutant's true bug class against the diagnosis of its most severe failure")
    parts = [text, legend]
    if scored:
        parts.append(f"Diagnosis accuracy: {correct} of {len(scored)} killed mutants named right "
                     f"({100 * correct / len(scored):.0f}%)")
        if confusion:
            parts.append("Confusion (declared -> diagnosed, count):\n" + "\n".join(
                f"  {d} -> {g}: {n}" for (d, g), n in confusion.most_common()))
    return "\n\n".join(parts), summary


def long_table(reports) -> str:
    """One row per layer, check and dtype: examples drawn, worst units, status and tier."""
    rows = [(r.name, c.check, c.dtype, c.examples, _units(c.worst_units),
             c.tier.upper() if c.status == "fail" else c.status) for r in reports for c in r.checks]
    parts = [table(("layer", "check", "dtype", "examples", "worst (tol units)", "status"), rows)]
    notes = notes_text(reports)
    if notes:
        parts.append(notes)
    details = [failure_text(f) for report in reports for f in report.failures]
    if details:
        parts.append("Failures (minimal examples after shrinking):\n" + "\n\n".join(details))
    return "\n\n".join(parts)
