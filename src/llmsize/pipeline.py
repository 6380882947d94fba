"""The main job, step by step: load, validate, build, sample, summarise, report.

Every input is validated before anything is sampled, and every output is
written to a temporary folder that replaces the report only at the end.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmsize import interrupts
from llmsize.inference.sampling import SampleSettings, fit
from llmsize.inputs.checks import RunRequest, load_inputs
from llmsize.inputs.data import Dataset
from llmsize.inputs.hypothesis import Hypothesis, hypothesis_files
from llmsize.outputs import io, plots
from llmsize.outputs.decompose import decompose_cuts
from llmsize.outputs.draws import thinned_draws, write_draws
from llmsize.outputs.families import report_families
from llmsize.outputs.folders import check_output_dir
from llmsize.outputs.html import write_pages
from llmsize.outputs.markdown import family_cuts, headline_table, render_family, render_readme
from llmsize.outputs.summary import (
    Diagnostics,
    diagnostics,
    parameter_diagnostics,
    parameter_draws,
    psense_of_groups,
    sensitivity_groups,
    summary_table,
)
from llmsize.physics.design import Design

log = logging.getLogger(__name__)


@dataclass
class InferenceResult:
    """A written report: its folder, diagnostics, headline lines and the run's DataTree."""

    out_dir: Path
    diagnostics: Diagnostics
    headline: list[str]
    tree: Any = None


@contextlib.contextmanager
def report_worker():
    """One worker process of the report (:func:`report_workers`).

    The worker is forked from a fresh server process that has imported
    :mod:`llmsize.outputs.summary` and :mod:`llmsize.outputs.plots` (started now, its
    imports overlap the sampling) and ignores SIGINT (the main process handles
    interrupts). It writes only into the report's staging folder, which is
    removed if the run fails.

    The worker never outlives this process: when the run fails or is
    interrupted it is killed at once (not left to finish its task), and a
    thread of its own ends it when this process ends, even by SIGKILL
    (:func:`llmsize.interrupts.exit_with_parent`). With it go the fork server and the resource
    tracker, which live only as long as the worker holds their pipes.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["llmsize.outputs.summary", "llmsize.outputs.plots"])
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=context,
        initializer=_worker_init,
        initargs=(os.getpid(), _logger_levels(), list(warnings.filters)),
    )
    # Starts the worker now (not at the first task); its answer names the process.
    # Submitting the first task starts the fork server and waits for its imports
    # (about 1.3 s), so it is done from a thread: the model is loaded meanwhile. A
    # task submitted before the worker is up waits too: the prior draws, handed to
    # the figures worker as the fit begins, hold the main thread that long
    # (handing them over from a thread as well gained nothing on 2 cores:
    # benchmarks/README.md, "Prior swap").
    started: list = []
    starter = threading.Thread(
        target=lambda: started.append(pool.submit(os.getpid)), name="llmsize-worker-start"
    )
    starter.start()
    try:
        yield pool
    except BaseException:
        starter.join()
        first = started[0] if started else None
        if first is not None and first.done() and first.exception() is None:
            with contextlib.suppress(OSError):
                os.kill(first.result(), signal.SIGKILL)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    starter.join()
    pool.shutdown()


def _logger_levels() -> dict[str, int]:
    """The levels this process set on loggers (the root's under ``""``)."""
    levels = {"": logging.getLogger().level}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _worker_init(parent: int, levels: dict[str, int], filters: list) -> None:
    """:func:`llmsize.interrupts.worker_init`, and this process's logger levels and
    warning filters: the worker's libraries (PyMC for the prior draws) say what the
    main process's would, nothing under ``--quiet``.
    """
    interrupts.worker_init(parent)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    warnings.filters[:] = filters  # type: ignore[index]  # typeshed types it read-only; a list at run time


@contextlib.contextmanager
def report_workers():
    """The two worker processes of a report: statistics and figures, beside this one.

    R-hat and bulk ESS of every parameter, and the prior sensitivity of every
    reported quantity, are Python loops over thousands of elements (about 6 s
    of a warm run at the default draws); the first worker computes them while
    this process draws the families' figures and the second the two largest
    figures (prior against posterior, posterior predictive), from panels this
    process computes (:func:`llmsize.outputs.plots.prior_posterior_panels`,
    :func:`~llmsize.outputs.plots.ppc_panels`). On 2 cores the three share the
    machine; at short settings, where the statistics take 2 s, the report then
    takes about 1 s less than with the figures drawn here. Before the report, the
    second makes the prior draws while this process compiles the model and runs
    the chains (:func:`~llmsize.inference.sampling.fit`'s ``executor``); on a first
    run of a model's structure, their compile overlaps the model's.
    """
    with report_worker() as statistics, report_worker() as figures:
        yield statistics, figures


def _inputs_and_settings(request: RunRequest) -> tuple[Hypothesis, Dataset, Design, SampleSettings]:
    """:func:`~llmsize.inputs.checks.load_inputs` and the sampler settings of the run."""
    hyp, data, design = load_inputs(request)
    r = request
    settings = SampleSettings.from_hypothesis(
        hyp.sampler, draws=r.draws, tune=r.tune, chains=r.chains, seed=r.seed, cores=r.cores
    )
    return hyp, data, design, settings


def _fit_run(*, hyp, data, data_dir, design, settings, command, progress, executor=None):
    """Sample the run, with what made it (:func:`run_attributes`) on the tree's root;
    the prior draws in ``executor`` if given (:func:`~llmsize.inference.sampling.fit`).
    """
    tree = fit(design, hyp, settings, progress=progress, executor=executor)
    tree.attrs = run_attributes(
        hyp=hyp, data=data, data_dir=data_dir, settings=settings, command=command
    )
    return tree


def check_inputs(
    request: RunRequest, out_dir: Path | None = None
) -> tuple[Hypothesis, Dataset, Design, SampleSettings, Path]:
    """:func:`~llmsize.inputs.checks.load_inputs` (what ``validate`` checks), and the
    output folder: everything ``infer`` needs, checked before anything is compiled.

    The output folder (:func:`llmsize.outputs.folders.check_output_dir`): not the
    data, the hypothesis' folder, the working folder or ``/``, nor inside the
    data; writable; a name the file system can hold. Returns the hypothesis,
    data, design, settings and output folder of the run.
    """
    hyp, data, design, settings = _inputs_and_settings(request)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / hyp.name
    check_output_dir(
        out_dir,
        data_dir=request.data_dir,
        hypothesis_files=hypothesis_files(request.hypothesis_path),
    )
    return hyp, data, design, settings, out_dir


def run_inference(
    *,
    data_dir: Path,
    hypothesis_path: Path,
    out_dir: Path | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
    command: str = "llmsize infer",
    cores: int | None = None,
    progress: bool = False,
) -> InferenceResult:
    """Run ``infer`` end to end and write its report folder.

    Every input and the output folder are checked before anything is compiled or
    sampled (:func:`check_inputs`); a problem raises one
    :class:`~llmsize.exceptions.LlmsizeError`. ``cores``: threads the chains
    sample on (default one per chain, at most two); ``progress``: nutpie's
    progress bar while the chains run (the CLI shows it on a terminal only).
    """
    request = RunRequest(
        data_dir=data_dir, hypothesis_path=hypothesis_path, draws=draws, tune=tune,
        chains=chains, seed=seed, overrides=overrides, cores=cores,
    )  # fmt: skip
    return run_request(request, out_dir=out_dir, command=command, progress=progress)


def run_request(
    request: RunRequest,
    *,
    out_dir: Path | None = None,
    command: str = "llmsize infer",
    progress: bool = False,
) -> InferenceResult:
    """:func:`run_inference` of a :class:`~llmsize.inputs.checks.RunRequest`."""
    data_dir = request.data_dir
    hyp, data, design, settings, out_dir = check_inputs(request, out_dir)
    log.info(
        "hypothesis '%s'; %d serving epochs; %d models of unknown size",
        hyp.name,
        design.n_epochs,
        len(design.unknown),
    )
    with report_workers() as workers:
        # The figures worker is idle until the report: it makes the prior draws.
        tree = _fit_run(
            hyp=hyp, data=data, data_dir=data_dir, design=design, settings=settings,
            command=command, progress=progress, executor=workers[1],
        )  # fmt: skip
        return _report(
            tree, workers, data=data, data_dir=data_dir, design=design, hyp=hyp, out_dir=out_dir
        )


def run_attributes(
    *, hyp: Hypothesis, data: Dataset, data_dir: Path, settings: SampleSettings, command: str
) -> dict[str, str]:
    """What made a run (:func:`llmsize.outputs.io.provenance`, and the command that asked for
    it): the attributes of its DataTree's root, written into ``posterior.nc``, from
    which :func:`render_report` rebuilds the report.
    """
    return {
        **io.provenance(
            hypothesis=hyp.to_dict(),
            hypothesis_digest=hyp.digest(),
            data_digest=data.digest,
            data_dir=str(data_dir),
            seed=settings.seed,
            settings={
                "draws": settings.draws,
                "tune": settings.tune,
                "chains": settings.chains,
                "target_accept": settings.target_accept,
                "adaptation": settings.adaptation,
                "sampler": "nutpie",
            },
        ),
        "command": command,
    }


def fit_only(request: RunRequest, *, command: str = "llmsize.infer()", progress: bool = False):
    """Check the inputs (:func:`~llmsize.inputs.checks.load_inputs`), fit, and return the
    run's DataTree with :func:`run_attributes` on its root; no report is written.
    """
    hyp, data, design, settings = _inputs_and_settings(request)
    return _fit_run(
        hyp=hyp, data=data, data_dir=request.data_dir, design=design, settings=settings,
        command=command, progress=progress,
    )  # fmt: skip


#: Root attributes a DataTree needs for :func:`render_report`.
REPORT_ATTRIBUTES = ("hypothesis", "hypothesis_sha256", "data_dir", "data_sha256", "command")


def render_report(tree, out_dir: Path, *, data_dir: Path | None = None, source: str = "<tree>"):
    """Write the report of a finished run (a DataTree of :func:`fit_only` or read from a
    report's ``posterior.nc``) to ``out_dir`` without sampling.

    The hypothesis comes from the tree's attributes (its sha256 checked); the data from
    ``data_dir``, by default the folder the run recorded, and it must be the data the
    run was fitted on (sha256 checked). Everything is checked before anything is
    written, with one :class:`~llmsize.exceptions.LlmsizeError` naming ``source`` (or
    the data folder) on the first problem. Given the same calibration beside
    ``out_dir``, the pages are those the run itself wrote, byte for byte.
    """
    import json

    from llmsize.exceptions import DataError, LlmsizeError, one_line
    from llmsize.inputs.data import load_dataset
    from llmsize.inputs.hypothesis import validate
    from llmsize.physics.design import build_design

    for group in ("posterior", "prior", "posterior_predictive"):
        if group not in tree.children:
            raise LlmsizeError(f"not a run of llmsize infer (no {group} group)", file=source)
    attrs = {str(k): v for k, v in tree.attrs.items()}
    missing = [k for k in REPORT_ATTRIBUTES if not isinstance(attrs.get(k), str)]
    if missing:
        raise LlmsizeError(
            "not a run of llmsize infer (its attributes lack " + ", ".join(missing) + ")",
            file=source,
        )
    try:
        raw = json.loads(attrs["hypothesis"])
    except ValueError:
        raise LlmsizeError("its hypothesis attribute is not JSON", file=source) from None
    if not isinstance(raw, dict):
        raise LlmsizeError("its hypothesis attribute is not a JSON object", file=source)
    hyp = validate(raw, source=f"{source} (hypothesis attribute)")
    if hyp.digest() != attrs["hypothesis_sha256"]:
        raise LlmsizeError(
            "its hypothesis does not match its hypothesis_sha256 (the file was altered)",
            file=source,
        )
    if data_dir is None:
        # The folder the run recorded; from elsewhere (a relative "data"), the default one.
        data_dir = Path(attrs["data_dir"])
        if not data_dir.is_dir():
            from llmsize.inputs.bundled import default_data_dir

            data_dir = default_data_dir()
    data_dir = Path(data_dir)
    data = load_dataset(data_dir)
    if data.digest != attrs["data_sha256"]:
        raise DataError(
            one_line(
                f"not the data {source} was fitted on (sha256 {data.digest[:12]}, the run's "
                f"{attrs['data_sha256'][:12]}); pass --data with that folder"
            ),
            file=str(data_dir),
        )
    design = build_design(data, hyp)
    out_dir = Path(out_dir)
    check_output_dir(out_dir, data_dir=data_dir, hypothesis_files=())
    with report_workers() as workers:
        return _report(
            tree, workers, data=data, data_dir=data_dir, design=design, hyp=hyp, out_dir=out_dir
        )


@contextlib.contextmanager
def _writer_thread():
    """A thread for the posterior's netCDF file, joined with SIGINT and SIGTERM held:
    a second Ctrl-C must not leave it writing while the process exits.
    """
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        yield pool
    finally:
        with interrupts.signals_deferred():
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _figures_awaited():
    """A list for the futures of the figures a worker draws into the staging folder, all
    awaited, with SIGINT and SIGTERM held, when the block ends, however it ends: the
    folder is neither published nor removed while the worker writes into it.
    """
    futures: list = []
    try:
        yield futures
    finally:
        with interrupts.signals_deferred():
            concurrent.futures.wait(futures)


def _calibration_metrics(calib_dir: Path, hyp: Hypothesis, data: Dataset):
    """``metrics.csv`` of the calibration beside the report, if it was made with this
    hypothesis, data and model code; ``None`` (with a warning) if not, or if it cannot be read:
    after the fit, a damaged calibration folder costs the report a section, not the run.
    """
    import json

    import pandas as pd

    from llmsize.outputs.provenance import calibration_matches

    if not ((calib_dir / "metrics.csv").is_file() and (calib_dir / "provenance.json").is_file()):
        return None
    try:
        made = json.loads((calib_dir / "provenance.json").read_text(encoding="utf-8"))
        if not isinstance(made, dict):
            raise ValueError("not a JSON object")
        if not calibration_matches(made, model_sha256=hyp.model_digest(), data=data):
            log.warning(
                "%s was made with another hypothesis, data or version of the model's "
                "code; the report leaves it out (rerun llmsize calibrate)",
                calib_dir,
            )
            return None
        return pd.read_csv(calib_dir / "metrics.csv")
    except (OSError, ValueError) as exc:  # pandas parser errors are ValueErrors
        log.warning("cannot read %s (%s); the report leaves it out", calib_dir, exc)
        return None


def _report(tree, workers, *, data, data_dir, design, hyp, out_dir):
    """Summaries, figures and pages of a fit, written to ``out_dir`` at once.

    The run's attributes (:func:`run_attributes`) are the tree's root attributes.
    ``workers`` (:func:`report_workers`): the parameter diagnostics and prior
    sensitivity are computed by the first, and the two largest figures drawn by the
    second, while this process draws the others; all are awaited before the report is
    published.
    """
    worker, drawer = workers
    parameters = worker.submit(parameter_diagnostics, parameter_draws(tree))
    sense = worker.submit(psense_of_groups, sensitivity_groups(tree))
    log.info("writing the report to %s", out_dir)
    attrs = {str(k): v for k, v in tree.attrs.items()}
    command = attrs.pop("command")
    table = summary_table(tree, design)
    families = report_families(data, design)
    decomposition = decompose_cuts(tree, design, hyp, [c for f in families for c in f.cuts])
    calib_dir = out_dir.parent / f"calibration-{hyp.name}"
    calib = _calibration_metrics(calib_dir, hyp, data)
    with (
        io.staged_output(out_dir) as tmp,
        _writer_thread() as pool,
        _figures_awaited() as drawn,
    ):
        # h5py writes without the GIL: the draws go to disk while the figures are drawn.
        # The pool is joined before the folder replaces the report.
        posterior_written = pool.submit(io.write_posterior, tree, tmp / "posterior.nc", attrs)
        drawn.extend(
            drawer.submit(plots.draw_and_save, draw, panels(tree, design), tmp / name)
            for draw, panels, name in (
                (plots.draw_prior_posterior, plots.prior_posterior_panels, "prior_posterior.png"),
                (plots.draw_ppc, plots.ppc_panels, "ppc.png"),
            )
        )
        io.write_summary(table, tmp / "summary.csv")
        write_draws(thinned_draws(tree, design), tmp / "draws.nc", attrs)
        # The effective hypothesis, after ``extends`` and ``--set``.
        io.write_json(hyp.to_dict(), tmp / "hypothesis.json")
        decomposition.to_csv(
            tmp / "decomposition.csv", index=False, float_format="%.4g", lineterminator="\n"
        )
        for k, fam in enumerate(families):
            plots.save(plots.plot_size_by_date(tree, design, fam), tmp / f"size-{fam.name}.png")
            if fam.cuts:
                plots.save(
                    plots.plot_cuts(family_cuts(decomposition, fam), fam.title),
                    tmp / f"cuts-{fam.name}.png",
                )
            if k == 0:  # the headline family's figures, under the names the README uses
                shutil.copyfile(tmp / f"size-{fam.name}.png", tmp / "size_by_date.png")
                if fam.cuts:
                    shutil.copyfile(tmp / f"cuts-{fam.name}.png", tmp / "cuts.png")
            (tmp / f"{fam.page}.md").write_text(
                render_family(
                    tree=tree,
                    design=design,
                    family=fam,
                    decomposition=decomposition,
                    attrs=attrs,
                    table=table,
                ),  # fmt: skip
                encoding="utf-8",
            )
        diag = diagnostics(tree, table, parameters.result())
        sensitivity = sense.result()
        sensitivity.to_csv(
            tmp / "psense.csv", index=False, float_format="%.4g", lineterminator="\n"
        )
        io.write_json(
            {
                **diag.__dict__,
                "passed": diag.passed,
                "failures": diag.failures(),
                **{k: v for k, v in attrs.items() if k != "hypothesis" and k != "created_at"},
            },
            tmp / "diagnostics.json",
        )
        (tmp / "README.md").write_text(
            render_readme(
                tree=tree,
                design=design,
                hyp=hyp,
                diag=diag,
                attrs=attrs,
                command=command,
                calibration=calib,
                calibration_dir=str(calib_dir) if calib is not None else None,
                sensitivity=sensitivity,
                families=families,
                decomposition=decomposition,
            ),
            encoding="utf-8",
        )
        # The same report as self-contained pages (images embedded, sources linked):
        # index.html and one page per family.
        for figure in drawn:
            figure.result()
        write_pages(tmp, data_dir=data_dir)
        posterior_written.result()
    head = headline_table(tree, design, families[0].epochs if families else None)
    lines = [
        f"{r['date']} {r['model']}: {r['median (B)']}B (90% {r['90% interval']})"
        for r in head.to_dict("records")
    ]
    return InferenceResult(out_dir=out_dir, diagnostics=diag, headline=lines, tree=tree)
