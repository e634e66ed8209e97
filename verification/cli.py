"""The command line behind ``python -m verification`` (``make verify``, ``make mutants``, ``make seeds``).

    python -m verification [--layer NAME ...]     prove the catalogue (and the seed-scale case)
    python -m verification check FILE.py:NAME     prove your own layer(s) (or module:NAME)
    python -m verification cs231n layers.py ...   check a CS231n assignment's functions
    python -m verification mutants [--only ...]   the self-proof: the kill matrix of the mutants
    python -m verification seeds --count 20       the catalogue over many seeds: no false failure
    python -m verification replay FILE.npz        replay a failure's reproducer

A mistake on the command line gets one line and exit status 2; Ctrl-C one line and 130.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from .catalogue import LAYERS, MUTANTS, VARIANTS
from .checks import CHECKS
from .layer import LayerDefinitionError
from .locate import LocatorError, load
from .oracles import forget, format_bytes, shares_programs
from .report import kill_matrix, summary_table, table
from .runner import DTYPES, REQUIRE, LayerReport, check_layer
from .seedscale import SEED_SHAPE, jacobian_costs, seed_scale_case
from .space import freeze

DEFAULT_EXAMPLES = 80
"""Examples per layer and dtype in `make verify` and `make seeds`: every edge (3 each), the
explored configurations (25 at least) and random values on them; every mutant dies within
MUTANT_EXAMPLES. A cold catalogue run measured 42-47 s on 2 cores (100 examples: 47 s against
42 s back to back), and up to 60 s while the machine ran slow: 80 keeps room under the 60 s
goal as the catalogue grows."""
MUTANT_EXAMPLES = 50


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def common_options(parser, examples):
    parser.add_argument("--max-examples", type=at_least_one, default=examples,
                        help=f"hypothesis examples per layer, each run in every dtype (default {examples})")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0); runs are reproducible")
    parser.add_argument("--dtype", action="append", choices=DTYPES,
                        help="check only this dtype (repeatable); default: " + " and ".join(DTYPES))
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the report as JSON to PATH")
    parser.add_argument("--jobs", type=at_least_one, default=min(2, os.cpu_count() or 1),
                        help="layers checked in parallel processes (default: 2, or 1 on a 1-core machine)")


def _layer_names(value: str) -> str:
    if value not in LAYERS:
        raise argparse.ArgumentTypeError(f"no layer {value!r}; the catalogue has {', '.join(sorted(LAYERS))}")
    return value


def parse_verify(argv):
    parser = Parser(
        prog="python -m verification",
        description="Prove the NumPy reference backwards against JAX on hypothesis-drawn examples in float64 and "
                    "float32: " + ", ".join(CHECKS) + ". Subcommands: check, cs231n, mutants, seeds, replay; see "
                    "'python -m verification <subcommand> --help'.")
    parser.add_argument("--layer", action="append", metavar="NAME", type=_layer_names,
                        help="check only this layer (repeatable); default: the whole catalogue")
    common_options(parser, DEFAULT_EXAMPLES)
    parser.add_argument("--long", action="store_true", help="one table row per layer, check and dtype")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--seed-scale", action="store_true",
                       help="also run the seed-scale case (linear at N=64, D=M=4096 in float32); the default "
                            "whole-catalogue run does")
    scale.add_argument("--no-seed-scale", action="store_true", help="skip the seed-scale case")
    return parser.parse_args(argv)


def parse_check(argv):
    parser = Parser(prog="python -m verification check",
                     description="Prove layers of your own: FILE.py:NAME or package.module:NAME, naming a "
                                 "verification.Layer or a list of them.")
    parser.add_argument("locators", nargs="+", metavar="FILE.py:NAME")
    common_options(parser, DEFAULT_EXAMPLES)
    parser.add_argument("--require", choices=tuple(REQUIRE), default="contract",
                        help="what must hold: everything (contract, the default), the mathematics and its accuracy "
                             "(accuracy), or the derivative alone (math)")
    return parser.parse_args(argv)


def parse_mutants(argv):
    parser = Parser(
        prog="python -m verification mutants",
        description="Run the library of planted bugs (MUTANTS) and correct variants (VARIANTS) from the spec "
                    "modules; print which check rejects which mutant, the size of the shrunk failing example and "
                    "the diagnosis accuracy. Exits 1 if a mutant survives or a correct variant is rejected.")
    parser.add_argument("--layer", action="append", metavar="NAME", type=_layer_names,
                        help="only the mutants and variants of this layer (repeatable)")
    parser.add_argument("--only", action="append", metavar="LAYER[NAME]",
                        help="only this mutant or variant, e.g. 'linear[sign_flip]' (repeatable)")
    common_options(parser, MUTANT_EXAMPLES)
    return parser.parse_args(argv)


def parse_seeds(argv):
    parser = Parser(prog="python -m verification seeds",
                     description="Prove the catalogue once per seed (1..COUNT): a correct catalogue never fails; "
                                 "reports the configurations explored over all seeds.")
    parser.add_argument("--count", type=at_least_one, default=20, help="number of seeds (default 20)")
    parser.add_argument("--layer", action="append", metavar="NAME", type=_layer_names)
    common_options(parser, DEFAULT_EXAMPLES)
    return parser.parse_args(argv)


def parse_replay(argv):
    parser = Parser(prog="python -m verification replay",
                     description="Replay a failure's reproducer: exit 1 when the same check fails at the same "
                                 "place, 3 when it does not reproduce.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--layer", metavar="FILE.py:NAME", help="where the layer lives, if the file does not say")
    return parser.parse_args(argv)


def _replacements():
    return {r.key: r for r in (*MUTANTS, *VARIANTS)}


SEED_SCALE = "seed-scale"


_last_layer: list[str] = []  # the catalogue layer this process checked last


def _check(task, max_examples, dtypes, require, shrink=True):
    """One unit of work, by name, so that it can run in another process: (locator, layer name, seed)."""
    locator, name, seed = task
    base = (name or "").split("[")[0]
    if _last_layer and _last_layer[0] != base:  # its mutants and seeds reuse a layer's programs; others do not
        forget()
    _last_layer[:] = [base]
    started = time.perf_counter()
    if locator == SEED_SCALE:
        report, _ = seed_scale_case(seed=seed)
    else:
        (layer,) = load(locator, name)
        report = check_layer(layer, max_examples=max_examples, seed=seed, dtypes=dtypes, require=require,
                             shrink=shrink)
    report.seconds = time.perf_counter() - started
    return report


def _by_layer(tasks) -> list[list]:
    """The tasks of one layer (its mutants, variants, seeds) as one unit of work, so that one worker
    compiles the layer's programs once; the largest units first, so that the workers finish together."""
    groups: dict[str, list] = {}
    for task in tasks:
        groups.setdefault((task[1] or task[0]).split("[")[0], []).append(task)
    return sorted(groups.values(), key=len, reverse=True)


def _check_group(group, max_examples, dtypes, require, shrink):
    return [_check(task, max_examples, dtypes, require, shrink) for task in group]


def run_tasks(tasks, *, max_examples, dtypes, jobs, require="contract", shrink=True, out=sys.stderr):
    """Check each (locator, name, seed), in ``jobs`` processes, printing a line per finished task."""
    reports, started = {}, time.perf_counter()

    def done(task, report):
        reports[task] = report
        seed = f" seed {task[2]}" if len({t[2] for t in tasks}) > 1 else ""
        word = report.verdict if not report.passed or report.verdict != "pass" else "pass"
        print(f"[{len(reports):>3}/{len(tasks)}] {report.name:<40}{seed} {word:<10} {report.seconds:5.1f} s  "
              f"(elapsed {time.perf_counter() - started:5.1f} s)", file=out, flush=True)

    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            done(task, _check(task, max_examples, dtypes, require, shrink))
        return [reports[task] for task in tasks]
    pool = _pool(jobs)
    try:
        futures = _submit(pool, tasks, max_examples, dtypes, require, shrink)
        for future in as_completed(futures):
            for task, report in zip(futures[future], future.result()):
                done(task, report)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    return [reports[task] for task in tasks]


def _pool(jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_ignore_interrupts)


def _submit(pool, tasks, max_examples, dtypes, require, shrink) -> dict:
    """{future: its group of tasks}. Workers start while submitting: with one thread each, and
    with Ctrl-C ignored from their first instruction (an ignored signal stays ignored across
    exec), so that the main process alone answers it, by stopping them."""
    with _one_thread_each(), _interrupts_ignored():
        return {pool.submit(_check_group, group, max_examples, dtypes, require, shrink): group
                for group in _by_layer(tasks)}


class Background:
    """Tasks checked in ``jobs`` worker processes while the caller goes on (the test suite starts
    its fixtures' checks at collection and runs its other tests meanwhile); ``reports(tasks)``
    waits for those tasks. Submitted first, checked first."""

    def __init__(self, jobs: int = 1):
        self.pool = _pool(jobs)
        self.where: dict[tuple, tuple] = {}  # task -> (its group's future, its index in the group)

    def submit(self, tasks, *, max_examples, dtypes=DTYPES, require="contract", shrink=True) -> None:
        for future, group in _submit(self.pool, tasks, max_examples, dtypes, require, shrink).items():
            self.where.update({task: (future, index) for index, task in enumerate(group)})

    def reports(self, tasks) -> list:
        return [self.where[task][0].result()[self.where[task][1]] for task in tasks]

    def close(self) -> None:
        _stop(self.pool)


def _ignore_interrupts():
    """Workers leave Ctrl-C to the main process, which stops them: no traceback from each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _interrupts_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(pool):
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=10)


ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ONE_XLA_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def one_xla_thread() -> None:
    """Run XLA's CPU runtime on one thread in this process and those it starts (call before
    JAX computes anything). The oracle programs are far too small to share out, and two
    workers with a thread pool each oversubscribed the 2 cores: a cold ``make verify`` took
    69 s instead of 53 s. ``python -m verification`` sets it for itself and its workers, the test
    suite for itself and its background worker (the same flags: they share compiled programs
    through the persistent cache)."""
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


def by_cost(names):
    """The layers with the most inputs first (their programs are the largest: a whole model, then
    attention, recurrences, norms ... activations), and among equals those that compile a program
    per configuration (no shared one), the elementwise last, so that two workers finish together."""
    def cost(name):
        layer = LAYERS[name]
        return -len(layer.input_names), shares_programs(layer), bool(layer.hints.elementwise), name
    return sorted(names, key=cost)


def json_target(path: Path | None) -> Path | None:
    """Refuse an unusable --json path before the run, not after it; never create folders."""
    if path is None:
        return None
    if path.is_dir():
        raise UsageError(f"--json {path}: is a directory; give a file path such as {path / 'report.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--json {path}: the folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--json {path}: not writable")
    return path


def _write_json(path, document):
    if path:
        path.write_text(json.dumps(document, indent=2))
        print(f"JSON report: {path}", file=sys.stderr)


def _dtypes(args) -> tuple[str, ...]:
    return tuple(dict.fromkeys(args.dtype or DTYPES))


def _layer_dicts(reports):
    return [r.to_dict() for r in reports]


def verify(argv) -> int:
    args = parse_verify(argv)
    json_path = json_target(args.json)
    names = list(dict.fromkeys(args.layer or LAYERS))
    seed_scale = args.seed_scale or (not args.layer and not args.no_seed_scale)
    dtypes = _dtypes(args)
    started = time.perf_counter()
    n, d, m = SEED_SHAPE
    print(f"Checking {len(names)} layer(s), {args.max_examples} examples each in {' and '.join(dtypes)}, "
          f"seed {args.seed}, {args.jobs} job(s)" + (
              f"; and the seed-scale case, linear at N={n}, D=M={d} in float32, against jax.vjp" if seed_scale else ""),
          file=sys.stderr, flush=True)
    # the seed-scale case goes first: the longest single task, it overlaps the catalogue
    tasks = ([(SEED_SCALE, None, args.seed)] if seed_scale else []) + [
        (f"catalogue:{name}", name, args.seed) for name in by_cost(names)]
    reports = run_tasks(tasks, max_examples=args.max_examples, dtypes=dtypes, jobs=args.jobs)
    seed_report = reports.pop(0) if seed_scale else None
    scheduled = [task[1] for task in tasks if task[0] != SEED_SCALE]
    reports = [reports[scheduled.index(name)] for name in names]  # the catalogue's order, not the schedule's
    if args.long:
        from .report import long_table
        print(long_table(reports))
    else:
        print(summary_table(reports))

    costs = []
    if seed_report is not None:
        costs = jacobian_costs(n, d, m)
        print("\nSeed-scale case: linear, float32, against jax.vjp\n")
        print(summary_table([seed_report]))
        print("\nWhat the explicit Jacobians would cost there:")
        print(table(("Jacobian", "shape", "entries", "float32", "float64"),
                    [(c["jacobian"], " x ".join(map(str, c["shape"])), f"{c['entries']:,}",
                      format_bytes(c["float32_bytes"]), format_bytes(c["float64_bytes"])) for c in costs]))

    everything = reports + ([seed_report] if seed_report else [])
    passed = all(r.passed for r in everything)
    seconds = time.perf_counter() - started
    failed = [f"{r.name} ({r.verdict})" for r in everything if not r.passed]
    print(f"\n{'PASSED' if passed else 'FAILED'}: {len(everything) - len(failed)} of {len(everything)} "
          f"layer reports passed in {seconds:.1f} s" + (f"; failing: {', '.join(failed)}" if failed else ""))
    _write_json(json_path, {
        "passed": passed, "seconds": round(seconds, 2),
        "settings": {"max_examples": args.max_examples, "seed": args.seed, "dtypes": list(dtypes), "jobs": args.jobs},
        "checks": list(CHECKS), "layers": _layer_dicts(reports),
        "seed_scale": None if seed_report is None else {**seed_report.to_dict(), "jacobian_costs": costs},
    })
    return 0 if passed else 1


def check(argv) -> int:
    args = parse_check(argv)
    json_path = json_target(args.json)
    tasks = []
    for locator in dict.fromkeys(args.locators):
        try:
            layers = load(locator)
        except LocatorError as error:
            raise UsageError(f"python -m verification check: {error}") from None
        if os.path.exists(locator.rpartition(":")[0]):  # workers may start elsewhere: an absolute path
            source, _, attr = locator.rpartition(":")
            locator = f"{Path(source).resolve()}:{attr}"
        tasks += [(locator, layer.name, args.seed) for layer in layers]
    dtypes = _dtypes(args)
    reports = run_tasks(tasks, max_examples=args.max_examples, dtypes=dtypes, jobs=args.jobs, require=args.require)
    print(summary_table(reports))
    passed = all(r.passed for r in reports)
    print(f"\n{'PASSED' if passed else 'FAILED'}: {sum(r.passed for r in reports)} of {len(reports)} layer(s) "
          f"passed (require={args.require})")
    _write_json(json_path, {"passed": passed, "require": args.require, "layers": _layer_dicts(reports)})
    return 0 if passed else 1


def mutants(argv) -> int:
    args = parse_mutants(argv)
    json_path = json_target(args.json)
    replacements = _replacements()
    unknown = sorted(set(args.only or ()) - set(replacements))
    if unknown:
        raise UsageError(f"python -m verification mutants: unknown mutants or variants: {', '.join(unknown)}")
    chosen = [name for name, r in replacements.items()
              if (not args.layer or r.layer in args.layer) and (not args.only or name in args.only)]
    dtypes = _dtypes(args)
    started = time.perf_counter()
    print(f"Running {len(chosen)} mutants and variants, up to {args.max_examples} examples each, seed {args.seed}, "
          f"{args.jobs} job(s)", file=sys.stderr, flush=True)
    tasks = [(f"{'mutant' if name in {m.key for m in MUTANTS} else 'variant'}:{name}", name, args.seed)
             for name in chosen]
    reports = run_tasks(tasks, max_examples=args.max_examples, dtypes=dtypes, jobs=args.jobs)
    text, summary = kill_matrix([(name, replacements[name], report) for name, report in zip(chosen, reports)])
    print(text)
    ok = summary["survivors"] == [] and summary["false_alarms"] == []
    accuracy = summary["diagnosis"]["accuracy"]
    print(f"\n{'PASSED' if ok else 'FAILED'}: {summary['killed']} of {summary['mutants']} mutants killed, "
          f"{summary['accepted']} of {summary['variants']} correct variants accepted"
          + ("" if accuracy is None else f", diagnosis accuracy {100 * accuracy:.0f}%")
          + f", in {time.perf_counter() - started:.1f} s")
    _write_json(json_path, {**summary, "passed": ok, "seed": args.seed, "max_examples": args.max_examples})
    return 0 if ok else 1


def seeds(argv) -> int:
    args = parse_seeds(argv)
    json_path = json_target(args.json)
    names = list(dict.fromkeys(args.layer or LAYERS))
    dtypes = _dtypes(args)
    seed_list = list(range(1, args.count + 1))
    started = time.perf_counter()
    reports = run_tasks([(f"catalogue:{n}", n, s) for s in seed_list for n in by_cost(names)], max_examples=args.max_examples,
                        dtypes=dtypes, jobs=args.jobs)
    by_seed = {s: reports[i * len(names):(i + 1) * len(names)] for i, s in enumerate(seed_list)}
    print(table(("seed", "layers", "passed", "failing"),
                [(s, len(rs), sum(r.passed for r in rs), ", ".join(r.name for r in rs if not r.passed) or "-")
                 for s, rs in by_seed.items()]))
    explored = _explored(names, reports)
    print("\nConfigurations explored over all seeds:\n")
    print(table(("layer", "distinct", "coverage"), [(n, len(c), _coverage(c)) for n, c in explored.items()]))
    failures = [r for r in reports if not r.passed]
    for report in failures:
        print(f"\nseed failure:\n{report}")
    print(f"\n{'PASSED' if not failures else 'FAILED'}: {len(reports) - len(failures)} of {len(reports)} "
          f"layer runs over {len(seed_list)} seeds passed in {time.perf_counter() - started:.1f} s; "
          f"distinct configurations per layer: {min(len(c) for c in explored.values())}-"
          f"{max(len(c) for c in explored.values())}")
    _write_json(json_path, {"passed": not failures, "seeds": seed_list, "layers": names,
                            "configurations": {n: len(c) for n, c in explored.items()},
                            "coverage": {n: _coverage(c) for n, c in explored.items()},
                            "failures": _layer_dicts(failures)})
    return 0 if not failures else 1


def _explored(names, reports) -> dict[str, dict]:
    explored = {name: {} for name in names}
    for report in reports:
        for config in report.configurations:
            explored[report.name].setdefault(freeze(config), config)
    return explored


def _coverage(configs: dict) -> str:
    from .space import describe_coverage
    return describe_coverage(configs.values())


def replay(argv) -> int:
    from .reproduce import replay as run_replay

    args = parse_replay(argv)
    if not args.file.is_file():
        raise UsageError(f"python -m verification replay: {args.file}: no such file")
    try:
        return run_replay(args.file, args.layer)
    except (LocatorError, ValueError) as error:
        raise UsageError(f"python -m verification replay: {error}") from None


def cs231n(argv) -> int:
    from .cs231n import main as course_main

    return course_main(argv)


COMMANDS = {"check": check, "cs231n": cs231n, "mutants": mutants, "seeds": seeds, "replay": replay}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return verify(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except LayerDefinitionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
