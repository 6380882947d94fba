"""Benchmark ``llmsize infer``: cold and warm end-to-end runs, and nutpie against PyMC's NUTS.

Three measurements, all with the same draws, tuning steps, chains and seed
(by default those of the hypothesis' ``[sampler]`` table):

1. **Cold**: ``python -m llmsize infer`` in a fresh subprocess whose PyTensor
   compile directories (``base_compiledir``, which holds PyTensor's Numba
   kernels, and ``compiledir``), ``NUMBA_CACHE_DIR`` and llmsize's
   compiled-model cache (``LLMSIZE_CACHE_DIR``) are new, empty temporary
   folders.
2. **Warm**: the same command again, reusing those caches: the compiled model
   is loaded from llmsize's cache (``llmsize.inference.compiled``). The table gives the
   ratio cold / warm and whether the two runs wrote the same ``summary.csv``,
   byte for byte (they must: same data, hypothesis and seed).
3. **Samplers**: in this process, the model is built once and sampled with
   nutpie (compile and sampling timed apart) and with PyMC's own NUTS
   (``pm.sample(nuts_sampler="pymc")``, timed as a whole, including its
   compile; its sampling loop alone is read from the ``sampling_time`` that
   PyMC records). For each: bulk ESS of ``log10_params_total_b`` (minimum and
   median over the models of unknown size), the minimum bulk ESS over every
   free parameter, the largest R-hat, divergences, and ESS per second.

Usage::

    python benchmarks/bench_infer.py [--data data] [--hypothesis models/default.toml]
        [--draws N --tune N --chains N] [--seed N] [--skip-pymc] [--json out.json]

Peak memory is the maximum resident set size reported by ``os.wait4`` for the
``infer`` subprocess (the largest of it and the descendants it waited for),
and, since ``infer`` computes whole-posterior statistics and draws two figures
in worker processes (``llmsize.pipeline.report_workers``), the peak of the summed proportional
set size (PSS: shared pages split between the processes that share them) of
the subprocess and all its descendants, read from ``/proc`` every 50 ms (Linux
only; a short peak between two readings can be missed). The sampler
comparison uses a fresh, empty compile cache of its own, so both compile times
are cold; nutpie compiles first, and PyMC may reuse the few compiled pieces
the two graphs share.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

#: Posterior variable holding the size of each model of unknown size.
SIZE_VAR = "log10_params_total_b"


@dataclass(frozen=True)
class Settings:
    """Sampler settings shared by every run of the benchmark."""

    draws: int
    tune: int
    chains: int
    seed: int
    target_accept: float
    #: nutpie's mass-matrix adaptation (PyMC's NUTS always adapts a diagonal one).
    adaptation: str = "diag"


@dataclass(frozen=True)
class ProcessRun:
    """One ``llmsize infer`` subprocess: wall time, peak memory, exit status."""

    label: str
    wall_s: float
    #: Peak resident memory of the main process (``os.wait4``).
    peak_rss_mib: float
    returncode: int
    #: Peak of the summed proportional set size of the process and its worker,
    #: sampled every 50 ms (Linux; 0 elsewhere).
    peak_tree_pss_mib: float = 0.0


@dataclass(frozen=True)
class SamplerRun:
    """Timings and sampling efficiency of one NUTS implementation."""

    sampler: str
    compile_s: float | None
    sampling_s: float
    total_s: float
    ess_size_min: float
    ess_size_median: float
    ess_free_min: float
    max_r_hat: float
    divergences: int

    @property
    def ess_size_min_per_s(self) -> float:
        """Minimum size ESS per second of sampling."""
        return self.ess_size_min / self.sampling_s

    @property
    def ess_size_min_per_total_s(self) -> float:
        """Minimum size ESS per second of compile plus sampling."""
        return self.ess_size_min / self.total_s

    @property
    def ess_free_min_per_s(self) -> float:
        """Minimum free-parameter ESS per second of sampling."""
        return self.ess_free_min / self.sampling_s

    @property
    def ess_free_min_per_total_s(self) -> float:
        """Minimum free-parameter ESS per second of compile plus sampling."""
        return self.ess_free_min / self.total_s

    def to_dict(self) -> dict:
        """Fields and derived rates, for the JSON output."""
        return {
            **asdict(self),
            "ess_size_min_per_s": self.ess_size_min_per_s,
            "ess_size_min_per_total_s": self.ess_size_min_per_total_s,
            "ess_free_min_per_s": self.ess_free_min_per_s,
            "ess_free_min_per_total_s": self.ess_free_min_per_total_s,
        }


# --------------------------------------------------------------------------- cold / warm


def cache_env(cache_root: Path) -> dict[str, str]:
    """Environment variables that point PyTensor, Numba and llmsize at caches under ``cache_root``.

    PyTensor's own Numba cache (its compiled logp and gradient kernels) lives
    in ``<base_compiledir>/numba``, not in ``compiledir`` and not in
    ``NUMBA_CACHE_DIR``, so both PyTensor directories are moved: setting
    ``compiledir`` alone leaves the kernels cached in ``~/.pytensor/numba`` and
    the "cold" run warm.

    Parameters
    ----------
    cache_root : Path
        Folder to hold ``pytensor/``, ``numba/`` and ``llmsize/``; created if
        missing.

    Returns
    -------
    dict of str to str
        ``PYTENSOR_FLAGS`` (flags already set are kept, the two compile
        directories are overridden), ``NUMBA_CACHE_DIR`` and
        ``LLMSIZE_CACHE_DIR`` (the compiled-model cache of ``llmsize.inference.compiled``).
    """
    pytensor_dir = cache_root / "pytensor"
    numba_dir = cache_root / "numba"
    llmsize_dir = cache_root / "llmsize"
    for folder in (pytensor_dir, numba_dir, llmsize_dir):
        folder.mkdir(parents=True, exist_ok=True)
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f.strip()]
    flags = [f for f in flags if not f.strip().startswith(("compiledir=", "base_compiledir="))]
    flags += [f"base_compiledir={pytensor_dir}", f"compiledir={pytensor_dir / 'compiledir'}"]
    return {
        "PYTENSOR_FLAGS": ",".join(flags),
        "NUMBA_CACHE_DIR": str(numba_dir),
        "LLMSIZE_CACHE_DIR": str(llmsize_dir),
    }


def _maxrss_mib(ru_maxrss: int) -> float:
    """``ru_maxrss`` in MiB (kibibytes on Linux, bytes on macOS)."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 2**10


def _tree_pss_mib(pid: int) -> float:
    """Memory of process ``pid`` and all its descendants now, in MiB: the sum of
    their proportional set sizes (Linux ``/proc/*/smaps_rollup``; pages shared by
    several processes, such as the worker's and its fork server's, count once in
    all; 0 where it cannot be read). ``infer`` runs its whole-posterior statistics
    in a worker process, whose memory adds to the main process'."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total / 2**10


def _watch_tree_pss(pid: int, peak: list[float], stop: threading.Event) -> None:
    """Sample :func:`_tree_pss_mib` every 50 ms into ``peak[0]`` until ``stop``."""
    while not stop.wait(0.05):
        peak[0] = max(peak[0], _tree_pss_mib(pid))


def run_llmsize(
    label: str,
    args: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    ok=(0,),
    watch_memory: bool = True,
) -> ProcessRun:
    """Run ``python -m llmsize <args>`` once in a subprocess and measure it: wall
    time, peak resident memory from ``os.wait4`` of this child only
    (``RUSAGE_CHILDREN`` would mix the runs) and, with ``watch_memory``, the peak
    summed PSS of its process tree. Raises ``RuntimeError``, ending with the tail
    of the log, when the exit status is not in ``ok``.

    Reading every process's ``smaps_rollup`` 20 times a second costs CPU on a
    2-core machine, so a benchmark of wall time alone turns it off.
    """
    cmd = [sys.executable, "-m", "llmsize", *args]
    with log_path.open("wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        peak, stop = [0.0], threading.Event()
        watcher = threading.Thread(target=_watch_tree_pss, args=(proc.pid, peak, stop))
        if watch_memory:
            watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stop.set()
        if watch_memory:
            watcher.join()
    proc.returncode = returncode = os.waitstatus_to_exitcode(status)
    if returncode not in ok:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{label} run failed (exit {returncode}): {' '.join(cmd)}\n{tail}")
    return ProcessRun(label, wall, _maxrss_mib(usage.ru_maxrss), returncode, peak[0])


def run_infer(
    label: str,
    *,
    data: Path,
    hypothesis: Path,
    out_dir: Path,
    settings: Settings,
    env: dict[str, str],
    log_path: Path,
) -> ProcessRun:
    """Run ``python -m llmsize infer`` once in a subprocess and measure it.

    Parameters
    ----------
    label : str
        Name of the run in the table (``"cold"``, ``"warm"``).
    data, hypothesis : Path
        Inputs of ``infer``.
    out_dir : Path
        Report folder to write (a temporary one).
    settings : Settings
        Draws, tuning steps, chains and seed passed on the command line.
    env : dict of str to str
        Variables added to this process' environment (the caches).
    log_path : Path
        File that receives the subprocess' stdout and stderr.

    Returns
    -------
    ProcessRun
        Wall time, and peak resident memory from ``os.wait4`` of this child
        only (``RUSAGE_CHILDREN`` would mix the runs).

    Raises
    ------
    RuntimeError
        If ``infer`` fails; the message ends with the tail of its log.
    """
    args = [
        "infer",
        "--data", str(data),
        "--hypothesis", str(hypothesis),
        "--out", str(out_dir),
        "--draws", str(settings.draws),
        "--tune", str(settings.tune),
        "--chains", str(settings.chains),
        "--seed", str(settings.seed),
    ]  # fmt: skip
    return run_llmsize(label, args, env=env, log_path=log_path)


def same_posterior(report_a: Path, report_b: Path) -> bool:
    """Whether two ``infer`` reports hold the same posterior draws.

    With the same data, hypothesis and seed they should; a difference means
    the result depends on the state of the compile cache.

    Parameters
    ----------
    report_a, report_b : Path
        Report folders, each with a ``posterior.nc``.

    Returns
    -------
    bool
        True if every posterior variable is equal, value for value.
    """
    import xarray as xr

    def load(report: Path) -> xr.Dataset:
        with xr.open_dataset(report / "posterior.nc", group="posterior", engine="h5netcdf") as ds:
            return ds.load()

    return load(report_a).equals(load(report_b))


def same_file(report_a: Path, report_b: Path, name: str = "summary.csv") -> bool:
    """Whether two ``infer`` reports hold the same file ``name``, byte for byte."""
    return (report_a / name).read_bytes() == (report_b / name).read_bytes()


# --------------------------------------------------------------------------- samplers


def efficiency(posterior, sample_stats, free_vars: list[str]) -> dict[str, float]:
    """Bulk ESS, R-hat and divergences of one posterior.

    Parameters
    ----------
    posterior, sample_stats : xarray.Dataset
        The ``posterior`` and ``sample_stats`` groups of a fit.
    free_vars : list of str
        Names of the model's free random variables.

    Returns
    -------
    dict
        ``ess_size_min`` and ``ess_size_median`` over the models of unknown
        size, ``ess_free_min`` and ``max_r_hat`` over every element of every
        free variable, and ``divergences``.
    """
    import arviz as az
    import numpy as np

    ess = az.ess(posterior[free_vars], method="bulk")
    rhat = az.rhat(posterior[free_vars])
    size_ess = np.asarray(ess[SIZE_VAR].values, dtype=float).ravel()
    return {
        "ess_size_min": float(np.min(size_ess)),
        "ess_size_median": float(statistics.median(size_ess)),
        "ess_free_min": min(float(np.nanmin(ess[v].values)) for v in free_vars),
        "max_r_hat": max(float(np.nanmax(rhat[v].values)) for v in free_vars),
        "divergences": int(sample_stats["diverging"].sum()),
    }


def sample_once(data: Path, hypothesis: Path, settings: Settings, sampler: str) -> SamplerRun:
    """Build the model and sample it with one NUTS implementation, in this process.

    Must run in a process whose PyTensor caches were set (by the caller) before
    PyTensor was imported, so that the compile time is a cold one.

    Parameters
    ----------
    data, hypothesis : Path
        Inputs, as for ``infer``.
    settings : Settings
        Draws, tuning steps, chains, seed and target acceptance.
    sampler : {"nutpie", "pymc"}
        nutpie as ``llmsize.inference.sampling.sample_posterior`` calls it (compiled by
        ``llmsize.inference.compiled.compile_model``, here into an empty cache), or PyMC's
        own NUTS.

    Returns
    -------
    SamplerRun
    """
    import logging

    import nutpie
    import pymc as pm

    from llmsize.inference.compiled import compile_model
    from llmsize.inference.model import build_model
    from llmsize.inputs.data import load_dataset
    from llmsize.inputs.hypothesis import load_hypothesis
    from llmsize.physics.design import build_design

    for name in ("pymc", "pytensor", "numba", "arviz"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="pytensor")
    warnings.filterwarnings("ignore", category=FutureWarning)

    hyp = load_hypothesis(hypothesis)
    design = build_design(load_dataset(data), hyp)
    model = build_model(design, hyp)
    free_vars = [rv.name for rv in model.free_RVs]

    if sampler == "nutpie":
        start = time.perf_counter()
        compiled = compile_model(model)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        tree = nutpie.sample(
            compiled,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            seed=settings.seed,
            target_accept=settings.target_accept,
            adaptation=settings.adaptation,
            progress_bar=False,
            cores=min(settings.chains, 2),
        )
        sampling_s = time.perf_counter() - start
        stats = efficiency(
            tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset(), free_vars
        )
        return SamplerRun("nutpie", compile_s, sampling_s, compile_s + sampling_s, **stats)

    start = time.perf_counter()
    tree = pm.sample(
        model=model,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=2,
        nuts_sampler="pymc",
        random_seed=settings.seed,
        target_accept=settings.target_accept,
        progressbar=False,
        compute_convergence_checks=False,
    )
    total_s = time.perf_counter() - start
    posterior = tree["posterior"].to_dataset()
    # PyMC times its sampling loop (after compiling and initialising) itself.
    sampling_s = float(posterior.attrs.get("sampling_time", total_s))
    stats = efficiency(posterior, tree["sample_stats"].to_dataset(), free_vars)
    return SamplerRun("pymc", total_s - sampling_s, sampling_s, total_s, **stats)


def compare_samplers(
    data: Path, hypothesis: Path, settings: Settings, *, skip_pymc: bool, cache_root: Path
) -> list[SamplerRun]:
    """Sample the model with nutpie and PyMC, each in a fresh subprocess with an
    empty compile cache of its own, so that neither reuses the other's kernels.

    Returns
    -------
    list of SamplerRun
    """
    runs = []
    for sampler in ("nutpie",) if skip_pymc else ("nutpie", "pymc"):
        out = cache_root / f"{sampler}.json"
        cmd = [
            sys.executable, str(Path(__file__).resolve()),
            "--data", str(data), "--hypothesis", str(hypothesis),
            "--draws", str(settings.draws), "--tune", str(settings.tune),
            "--chains", str(settings.chains), "--seed", str(settings.seed),
            "--one-sampler", sampler, "--json", str(out),
        ]  # fmt: skip
        env = {**os.environ, **cache_env(cache_root / f"{sampler}-cache")}
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        runs.append(SamplerRun(**json.loads(out.read_text(encoding="utf-8"))))
    return runs


# --------------------------------------------------------------------------- output


def format_report(
    settings: Settings,
    processes: list[ProcessRun],
    reproducible: bool,
    samplers: list[SamplerRun],
    summary_identical: bool | None = None,
) -> str:
    """The printed tables: end-to-end runs, then the sampler comparison."""
    lines = [
        f"settings: draws={settings.draws} tune={settings.tune} chains={settings.chains} "
        f"seed={settings.seed} target_accept={settings.target_accept} "
        f"adaptation={settings.adaptation}",
        "",
        "llmsize infer (subprocess)    wall s   peak RSS MiB   with worker (PSS) MiB",
    ]
    for p in processes:
        lines.append(
            f"  {p.label:<26} {p.wall_s:8.1f} {p.peak_rss_mib:14.0f} {p.peak_tree_pss_mib:23.0f}"
        )
    by_label = {p.label: p for p in processes}
    if "cold" in by_label and "warm" in by_label:
        ratio = by_label["cold"].wall_s / by_label["warm"].wall_s
        lines.append(f"  warm speed-up (cold / warm wall time): {ratio:.2f}x")
    if summary_identical is not None:
        lines.append(
            f"  summary.csv byte-identical, cold vs warm: {'yes' if summary_identical else 'NO'}"
        )
    lines.append(f"  warm posterior identical to cold: {'yes' if reproducible else 'NO'}")

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    rows = [
        ("compile s", lambda r: fmt(r.compile_s, ".1f")),
        ("sampling s", lambda r: fmt(r.sampling_s, ".1f")),
        ("total s (compile + sampling)", lambda r: fmt(r.total_s, ".1f")),
        (f"bulk ESS {SIZE_VAR} min", lambda r: fmt(r.ess_size_min, ".0f")),
        (f"bulk ESS {SIZE_VAR} median", lambda r: fmt(r.ess_size_median, ".0f")),
        ("bulk ESS all free params min", lambda r: fmt(r.ess_free_min, ".0f")),
        ("max R-hat all free params", lambda r: fmt(r.max_r_hat, ".4f")),
        ("divergences", lambda r: str(r.divergences)),
        ("size ESS min / sampling s", lambda r: fmt(r.ess_size_min_per_s, ".2f")),
        ("size ESS min / total s", lambda r: fmt(r.ess_size_min_per_total_s, ".2f")),
        ("free ESS min / sampling s", lambda r: fmt(r.ess_free_min_per_s, ".2f")),
        ("free ESS min / total s", lambda r: fmt(r.ess_free_min_per_total_s, ".2f")),
    ]
    width = max(len(name) for name, _ in rows) + 2
    lines += [
        "",
        f"{'sampler (own process each)':<{width}}" + "".join(f"{r.sampler:>12}" for r in samplers),
    ]
    for name, get in rows:
        lines.append(f"  {name:<{width - 2}}" + "".join(f"{get(r):>12}" for r in samplers))
    lines.append(
        "  (each sampler in its own process with an empty cache; PyMC's compile s is its"
        " total less its own sampling_time)"
    )
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """Versions and machine facts recorded with the results."""
    from importlib.metadata import PackageNotFoundError, version

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
    for pkg in ("llmsize", "pymc", "pytensor", "nutpie", "arviz", "numba", "numpy"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = "missing"
    return info


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; sampler settings default to the hypothesis' ``[sampler]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="data directory [data]")
    parser.add_argument(
        "--hypothesis", type=Path, default=Path("models/default.toml"),
        help="hypothesis file [models/default.toml]",
    )  # fmt: skip
    parser.add_argument("--draws", type=int, help="draws per chain [hypothesis]")
    parser.add_argument("--tune", type=int, help="tuning steps per chain [hypothesis]")
    parser.add_argument("--chains", type=int, help="chains [hypothesis]")
    parser.add_argument("--seed", type=int, help="random seed [hypothesis]")
    parser.add_argument(
        "--skip-pymc", action="store_true", help="skip PyMC's own NUTS (nutpie only)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--one-sampler", choices=("nutpie", "pymc"),
        help="internal: sample once with this sampler and write its figures to --json",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements, print the tables, optionally write JSON."""
    args = parse_args(argv)
    from llmsize.inputs.hypothesis import load_hypothesis  # pydantic only: no PyTensor import yet

    sampler = load_hypothesis(args.hypothesis).sampler
    settings = Settings(
        draws=args.draws if args.draws is not None else sampler.draws,
        tune=args.tune if args.tune is not None else sampler.tune,
        chains=args.chains if args.chains is not None else sampler.chains,
        seed=args.seed if args.seed is not None else sampler.seed,
        target_accept=sampler.target_accept,
        adaptation=sampler.adaptation,
    )
    if args.one_sampler is not None:
        run = sample_once(args.data, args.hypothesis, settings, args.one_sampler)
        args.json.write_text(json.dumps(asdict(run)) + "\n", encoding="utf-8")
        return 0

    with tempfile.TemporaryDirectory(prefix="llmsize-bench-") as tmp:
        root = Path(tmp)
        env = cache_env(root / "infer-cache")
        processes = [
            run_infer(
                label,
                data=args.data,
                hypothesis=args.hypothesis,
                out_dir=root / f"report-{label}",
                settings=settings,
                env=env,
                log_path=root / f"{label}.log",
            )
            for label in ("cold", "warm")
        ]
        reproducible = same_posterior(root / "report-cold", root / "report-warm")
        summary_identical = same_file(root / "report-cold", root / "report-warm", "summary.csv")
        samplers = compare_samplers(
            args.data, args.hypothesis, settings, skip_pymc=args.skip_pymc, cache_root=root
        )

    print(format_report(settings, processes, reproducible, samplers, summary_identical))  # noqa: T201
    if args.json is not None:
        result = {
            "settings": asdict(settings),
            "environment": environment(),
            "infer": [asdict(p) for p in processes],
            "warm_speedup": processes[0].wall_s / processes[1].wall_s,
            "summary_csv_identical_cold_warm": summary_identical,
            "warm_posterior_identical_to_cold": reproducible,
            "samplers": [s.to_dict() for s in samplers],
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
