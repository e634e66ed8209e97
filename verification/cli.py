"""The command line behind ``python -m verification`` (``make verify``, ``make mutants``).

    python -m verification [--layer NAME ...]     prove the catalogue
    python -m verification mutants [--only ...]   the self-proof: the kill matrix of the mutants
    python -m verification seeds --count 20       the catalogue over many seeds: no false failure
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from .catalogue import LAYERS, MUTANTS, VARIANTS
from .checks import CHECKS
from .oracles import format_bytes
from .report import kill_matrix, layer_table, summary_table, table
from .runner import check_layer
from .seedscale import SEED_SHAPE, jacobian_costs, seed_scale_case

DEFAULT_EXAMPLES = 100
MUTANT_EXAMPLES = 50


def _common(parser, examples):
    parser.add_argument("--max-examples", type=int, default=examples,
                        help=f"hypothesis examples per layer and dtype (default {examples})")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0); runs are reproducible")
    parser.add_argument("--dtype", action="append", choices=("float64", "float32"),
                        help="check only this dtype (repeatable); default: float64 and float32")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the report as JSON to PATH")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="layers checked in parallel processes (default: 2, or 1 on a 1-core machine)")


def parse_verify(argv):
    parser = argparse.ArgumentParser(
        prog="python -m verification",
        description="Prove the NumPy reference backwards against JAX on hypothesis-drawn examples in float64 "
                    "and float32: " + ", ".join(CHECKS) + ". Subcommands: 'mutants' (the kill matrix of the "
                    "planted bugs) and 'seeds' (the catalogue over many seeds); see '<subcommand> --help'.")
    parser.add_argument("--layer", action="append", metavar="NAME", choices=sorted(LAYERS),
                        help="check only this layer (repeatable); default: the whole catalogue")
    _common(parser, DEFAULT_EXAMPLES)
    parser.add_argument("--long", action="store_true", help="one table row per layer, check and dtype")
    parser.add_argument("--no-seed-scale", action="store_true",
                        help="skip the seed-scale linear case (N=64, D=M=4096, float32)")
    return parser.parse_args(argv)


def parse_mutants(argv):
    parser = argparse.ArgumentParser(
        prog="python -m verification mutants",
        description="Run the library of planted bugs (MUTANTS) and correct variants (VARIANTS) from the spec "
                    "modules; print which check rejects which mutant and the size of the shrunk failing "
                    "example. Exits non-zero if a mutant survives or a correct variant is rejected.")
    parser.add_argument("--layer", action="append", metavar="NAME", choices=sorted(LAYERS),
                        help="only the mutants and variants of this layer (repeatable)")
    parser.add_argument("--only", action="append", metavar="LAYER[NAME]",
                        help="only this mutant or variant, e.g. 'linear[sign_flip]' (repeatable)")
    _common(parser, MUTANT_EXAMPLES)
    return parser.parse_args(argv)


def parse_seeds(argv):
    parser = argparse.ArgumentParser(
        prog="python -m verification seeds",
        description="Prove the catalogue once per seed (1..COUNT): a correct catalogue never fails.")
    parser.add_argument("--count", type=int, default=20, help="number of seeds (default 20)")
    parser.add_argument("--layer", action="append", metavar="NAME", choices=sorted(LAYERS))
    _common(parser, DEFAULT_EXAMPLES)
    return parser.parse_args(argv)


def _replacements():
    return {f"{r.layer}[{r.name}]": r for r in (*MUTANTS, *VARIANTS)}


SEED_SCALE_TASK = "linear (seed scale)"


def _check(task, max_examples, dtypes):
    """One unit of work, by name, so that it can run in another process: (layer or replacement, seed)."""
    name, seed = task
    if name == SEED_SCALE_TASK:
        started = time.perf_counter()
        report, _ = seed_scale_case(seed=seed)
        report.seconds = time.perf_counter() - started
        return report
    layer = LAYERS[name] if name in LAYERS else _replacements()[name].apply(LAYERS[name.split("[")[0]])
    return check_layer(layer, max_examples=max_examples, seed=seed, dtypes=dtypes)


def run_tasks(tasks, *, max_examples, dtypes, jobs, out=sys.stderr):
    """Check each (name, seed), in ``jobs`` processes, printing a line per finished task."""
    reports, started = {}, time.perf_counter()

    def done(task, report):
        reports[task] = report
        seed = f" seed {task[1]}" if len({s for _, s in tasks}) > 1 else ""
        print(f"[{len(reports):>3}/{len(tasks)}] {report.name:<32}{seed} {'pass' if report.passed else 'FAIL'}"
              f"  {report.seconds:5.1f} s  (elapsed {time.perf_counter() - started:5.1f} s)", file=out, flush=True)

    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            done(task, _check(task, max_examples, dtypes))
    else:
        with _one_thread_each(), ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_check, task, max_examples, dtypes): task for task in tasks}
            for future in as_completed(futures):
                done(futures[future], future.result())
    return [reports[task] for task in tasks]


ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ONE_XLA_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def one_xla_thread() -> None:
    """Run XLA's CPU runtime on one thread in this process and those it starts (call before
    JAX computes anything). The oracle programs are far too small to share out, and two
    workers with a thread pool each oversubscribed the 2 cores: a cold ``make verify`` took
    69 s instead of 53 s. ``python -m verification`` sets it for itself and its workers.
    (The test suite does not: there it cost more than the compile cache it would share.)"""
    flags = os.environ.get("XLA_FLAGS", "")
    if ONE_XLA_THREAD not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {ONE_XLA_THREAD}".strip()


@contextlib.contextmanager
def _one_thread_each():
    """Workers start with one BLAS thread and one XLA runtime thread each: ``jobs`` processes
    with a thread per core each oversubscribe the cores (measured on 2 cores: OpenBLAS then
    slowed a (64, 256) x (256, 256) product from 0.25 ms to 17-27 ms). Spawned workers read
    the environment when they start, so it is set around their start; the calling process
    keeps its own BLAS settings."""
    saved = {name: os.environ.get(name) for name in (*ONE_THREAD, "XLA_FLAGS")}
    os.environ.update(ONE_THREAD)
    one_xla_thread()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write_json(path, document):
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2))
        print(f"JSON report: {path}", file=sys.stderr)


def verify(argv) -> int:
    args = parse_verify(argv)
    names = args.layer or list(LAYERS)
    dtypes = tuple(args.dtype or ("float64", "float32"))
    started = time.perf_counter()
    n, d, m = SEED_SHAPE
    print(f"Checking {len(names)} layer(s) x {len(dtypes)} dtype(s), {args.max_examples} examples each, "
          f"seed {args.seed}, {args.jobs} job(s)" + ("" if args.no_seed_scale else
          f"; and the seed-scale case, linear at N={n}, D=M={d} in float32, against jax.vjp"),
          file=sys.stderr, flush=True)
    # the seed-scale case goes first: the longest single task, it overlaps the catalogue
    tasks = ([] if args.no_seed_scale else [(SEED_SCALE_TASK, args.seed)]) + [(name, args.seed) for name in names]
    reports = run_tasks(tasks, max_examples=args.max_examples, dtypes=dtypes, jobs=args.jobs)
    seed_report = None if args.no_seed_scale else reports.pop(0)
    print(layer_table(reports) if args.long else summary_table(reports))

    costs = []
    if seed_report is not None:
        costs = jacobian_costs(n, d, m)
        print("\nSeed-scale case: linear, float32, against jax.vjp\n")
        print(layer_table([seed_report]))
        print("\nWhat the explicit Jacobians would cost there:")
        print(table(("Jacobian", "shape", "entries", "float32", "float64"),
                    [(c["jacobian"], " x ".join(map(str, c["shape"])), f"{c['entries']:,}",
                      format_bytes(c["float32_bytes"]), format_bytes(c["float64_bytes"])) for c in costs]))

    all_reports = reports + ([seed_report] if seed_report else [])
    passed = all(r.passed for r in all_reports)
    seconds = time.perf_counter() - started
    failed = [r.name for r in all_reports if not r.passed]
    print(f"\n{'PASSED' if passed else 'FAILED'}: {len(all_reports) - len(failed)} of {len(all_reports)} "
          f"layer reports passed in {seconds:.1f} s" + (f"; failing: {', '.join(failed)}" if failed else ""))
    _write_json(args.json, {
        "passed": passed, "seconds": round(seconds, 2),
        "settings": {"max_examples": args.max_examples, "seed": args.seed, "dtypes": list(dtypes), "jobs": args.jobs},
        "checks": list(CHECKS),
        "layers": [r.to_dict() for r in reports],
        "seed_scale": None if seed_report is None else {**seed_report.to_dict(), "jacobian_costs": costs},
    })
    return 0 if passed else 1


def mutants(argv) -> int:
    args = parse_mutants(argv)
    chosen = [name for name, r in _replacements().items()
              if (not args.layer or r.layer in args.layer) and (not args.only or name in args.only)]
    unknown = set(args.only or ()) - set(_replacements())
    if unknown:
        print(f"unknown mutants or variants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    dtypes = tuple(args.dtype or ("float64", "float32"))
    started = time.perf_counter()
    print(f"Running {len(chosen)} mutants and variants, up to {args.max_examples} examples per dtype, "
          f"seed {args.seed}, {args.jobs} job(s)", file=sys.stderr, flush=True)
    reports = run_tasks([(n, args.seed) for n in chosen], max_examples=args.max_examples, dtypes=dtypes,
                        jobs=args.jobs)
    replacements = _replacements()
    rows = [(name, replacements[name], report) for name, report in zip(chosen, reports)]
    text, summary = kill_matrix(rows)
    print(text)
    ok = summary["survivors"] == [] and summary["false_alarms"] == []
    print(f"\n{'PASSED' if ok else 'FAILED'}: {summary['killed']} of {summary['mutants']} mutants killed, "
          f"{summary['accepted']} of {summary['variants']} correct variants accepted, "
          f"in {time.perf_counter() - started:.1f} s")
    _write_json(args.json, {**summary, "passed": ok, "seed": args.seed, "max_examples": args.max_examples})
    return 0 if ok else 1


def seeds(argv) -> int:
    args = parse_seeds(argv)
    names = args.layer or list(LAYERS)
    dtypes = tuple(args.dtype or ("float64", "float32"))
    seed_list = list(range(1, args.count + 1))
    started = time.perf_counter()
    reports = run_tasks([(n, s) for s in seed_list for n in names], max_examples=args.max_examples,
                        dtypes=dtypes, jobs=args.jobs)
    by_seed = {s: reports[i * len(names):(i + 1) * len(names)] for i, s in enumerate(seed_list)}
    rows = [(s, len(rs), sum(r.passed for r in rs), ", ".join(r.name for r in rs if not r.passed) or "-")
            for s, rs in by_seed.items()]
    print(table(("seed", "layers", "passed", "failing"), rows))
    failures = [r for r in reports if not r.passed]
    for report in failures:
        print(f"\nseed failure:\n{report}")
    print(f"\n{'PASSED' if not failures else 'FAILED'}: {len(reports) - len(failures)} of {len(reports)} "
          f"layer runs over {len(seed_list)} seeds passed in {time.perf_counter() - started:.1f} s")
    _write_json(args.json, {"passed": not failures, "seeds": seed_list, "layers": names,
                            "failures": [r.to_dict() for r in failures]})
    return 0 if not failures else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"mutants": mutants, "seeds": seeds}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return verify(argv)
