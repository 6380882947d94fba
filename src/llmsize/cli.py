"""Command-line interface: a thin layer over the library.

Every input or output problem ends in one line on stderr naming the file, row
and field or the path, and exit status 2, before anything is compiled or
sampled; nothing is written unless the run completes. The tool's own faults end
in one line and exit status 1 (see :class:`_Group`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import NoReturn

import click

from llmsize import interrupts
from llmsize.exceptions import LlmsizeError, one_line
from llmsize.inputs.bundled import default_data_dir, default_hypothesis
from llmsize.version import __version__

log = logging.getLogger("llmsize")

#: The tool's own fault (a bug), reported as one line asking for a bug report.
EXIT_BUG = 1
#: An input or output problem the user can fix.
EXIT_INPUT = 2
EXIT_DIAGNOSTICS = 3
EXIT_INTERRUPTED = 130


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(format="%(message)s", level=logging.INFO if verbose else logging.WARNING)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in ("pymc", "pytensor", "numba", "arviz", "arviz_stats", "distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="pytensor")
    warnings.filterwarnings("ignore", category=FutureWarning)


class _Group(click.Group):
    """Ends every failure of a command in one line on stderr, never a traceback.

    A usage error of a command's options, or an input or output problem
    (:class:`~llmsize.exceptions.LlmsizeError`, or a system error such as a full
    disk or a permission refused, which names its path) exits with status 2; any
    other exception is the tool's own fault and exits with status 1, asking for a
    bug report (``LLMSIZE_DEBUG=1`` shows the traceback). An interrupt (Ctrl-C,
    SIGTERM) exits with status 130; further interrupts while the run cleans up
    and exits are ignored, so a second Ctrl-C can neither leave half a folder nor
    end the process by the signal.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupts.ignore_interrupts()
            click.echo("llmsize: interrupted; the previous report is unchanged", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except click.UsageError as exc:  # a subcommand's options: --kind nope, --draws x
            command = exc.ctx.command_path if exc.ctx is not None else "llmsize"
            click.echo(
                one_line(f"llmsize: error: {exc.format_message()} (see {command} --help)"),
                err=True,
            )
            ctx.exit(EXIT_INPUT)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except LlmsizeError as exc:
            click.echo(f"llmsize: error: {exc}", err=True)
            ctx.exit(EXIT_INPUT)
        except OSError as exc:
            click.echo(f"llmsize: error: {system_error(exc)}", err=True)
            ctx.exit(EXIT_INPUT)
        except Exception as exc:
            if os.environ.get("LLMSIZE_DEBUG"):
                raise
            click.echo(
                one_line(
                    f"llmsize: error: internal error ({type(exc).__name__}: {exc}); this is a "
                    "bug in llmsize, please report it with the command that caused it "
                    "(LLMSIZE_DEBUG=1 shows the traceback)"
                ),
                err=True,
            )
            ctx.exit(EXIT_BUG)


def system_error(exc: OSError) -> str:
    """A system error as one line naming its path: ``PATH: No space left on device``."""
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(one_line(os.fsdecode(p)) for p in paths)
    what = one_line(exc.strerror or str(exc) or type(exc).__name__)
    return f"{where}: {what}" if where else what


def _bundled_default(fallback):
    """A callback that replaces an option's default, when it is not in the working
    folder, by the bundled copy (:mod:`llmsize.inputs.bundled`): ``llmsize infer``
    runs in any folder. A value the user gives is kept as given.
    """

    def callback(ctx: click.Context, param: click.Parameter, value):
        if ctx.get_parameter_source(param.name) is click.core.ParameterSource.DEFAULT:
            return fallback()
        return value

    return callback


#: Options shared by the commands. Their defaults are relative to the working
#: folder, or the bundled copies when it has none.
DATA_OPTION = click.option(
    "--data",
    "data_dir",
    default="data",
    show_default="data, else the bundled data",
    type=click.Path(path_type=Path),
    callback=_bundled_default(default_data_dir),
    help="Data directory.",
)
HYPOTHESIS_OPTION = click.option(
    "--hypothesis",
    default="models/default.toml",
    show_default="models/default.toml, else the bundled one",
    type=click.Path(path_type=Path),
    callback=_bundled_default(default_hypothesis),
    help="Hypothesis (priors) file.",
)

CORES_OPTION = click.option(
    "--cores",
    type=int,
    default=None,
    help="Threads the chains sample on [one per chain, at most 2].",
)


def sampler_options(*, whose: str, draws: str, tune: str, chains: str, overrides: str):
    """``--draws``, ``--tune``, ``--chains`` and ``--seed``, which default to the
    hypothesis' ``[sampler]`` table, and ``--set``: ``whose`` names that table in
    the help, ``draws``, ``tune`` and ``chains`` describe each option and
    ``overrides`` says which hypotheses ``--set`` changes.
    """
    options = [
        click.option("--draws", type=int, default=None, help=f"{draws} [{whose}]."),
        click.option("--tune", type=int, default=None, help=f"{tune} [{whose}]."),
        click.option("--chains", type=int, default=None, help=f"{chains} [{whose}]."),
        click.option(
            "--seed", type=int, default=None, help=f"Random seed, 0 to 4294967295 [{whose}]."
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help=f"Override a setting of {overrides}, e.g. --set log10_overtrain.mu=1.0 "
            "(repeatable).",
        ),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


QUIET_OPTION = click.option(
    "-q", "--quiet", is_flag=True, help="Only errors (and no progress bar)."
)


def _show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal (a log file or pipe gets the log lines)."""
    return not quiet and sys.stderr.isatty()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmsize")
def cli() -> None:
    """Infer how big closed language models are from their API prices and speeds."""


@cli.command()
@DATA_OPTION
@HYPOTHESIS_OPTION
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Output folder [default: reports/<hypothesis name>/].",
)
@sampler_options(
    whose="the hypothesis' [sampler]",
    draws="Posterior draws per chain",
    tune="Tuning steps per chain",
    chains="Chains",
    overrides="the hypothesis",
)
@click.option("--strict", is_flag=True, help="Exit with status 3 when a diagnostic fails.")
@CORES_OPTION
@QUIET_OPTION
def infer(  # click passes one keyword per option
    *, data_dir, hypothesis, out_dir, draws, tune, chains, seed, overrides, strict, cores, quiet
) -> None:
    """Fit the model to the data and write the report.

    Example: ``llmsize infer --data data --hypothesis models/default.toml``
    """
    _setup_logging(not quiet)
    from llmsize.pipeline import run_inference

    start = time.perf_counter()
    ctx = click.get_current_context()
    command = " ".join(shlex.quote(a) for a in ["llmsize", str(ctx.info_name), *_given_args(ctx)])
    result = run_inference(
        data_dir=data_dir,
        hypothesis_path=hypothesis,
        out_dir=out_dir,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        overrides=list(overrides),
        command=command,
        cores=cores,
        progress=_show_progress(quiet),
    )
    diag = result.diagnostics
    log.info("wrote %s in %.0f s", result.out_dir, time.perf_counter() - start)
    for line in result.headline:
        log.info("  %s", line)
    status = "pass" if diag.passed else "FAIL: " + "; ".join(diag.failures())
    log.info(
        "diagnostics: %d divergences, max R-hat %.4f, min bulk ESS %.0f -> %s",
        diag.divergences,
        diag.max_r_hat,
        diag.min_ess_bulk,
        status,
    )
    if strict and not diag.passed:
        click.echo("llmsize: diagnostics failed: " + "; ".join(diag.failures()), err=True)
        sys.exit(EXIT_DIAGNOSTICS)


@cli.command()
@click.argument("posterior", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Output folder [default: the folder of POSTERIOR, rewritten in place].",
)
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="The data the run was fitted on [default: the folder it recorded, else the "
    "bundled data]; its sha256 must match the run's.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def report(posterior, out_dir, data_dir, quiet) -> None:
    """Re-render the report of a saved run from its posterior.nc, without sampling.

    The pages are those the run wrote, byte for byte, given the same calibration
    beside the output folder. Example: ``llmsize report reports/default/posterior.nc
    --out /tmp/default``
    """
    _setup_logging(not quiet)
    import llmsize

    start = time.perf_counter()
    out = out_dir if out_dir is not None else posterior.parent
    result = llmsize.report(posterior, out, data=data_dir)
    log.info("wrote %s in %.0f s", result.out_dir, time.perf_counter() - start)


@cli.command()
@DATA_OPTION
@HYPOTHESIS_OPTION
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
def validate(data_dir, hypothesis, overrides) -> None:
    """Check the data and the hypothesis without sampling, as every command does first."""
    _setup_logging(True)
    from llmsize.inputs.checks import RunRequest, load_inputs

    hyp, _, design = load_inputs(
        RunRequest(data_dir=data_dir, hypothesis_path=hypothesis, overrides=list(overrides))
    )
    click.echo(
        f"ok: hypothesis '{hyp.name}'; {design.n_epochs} serving epochs, "
        f"{len(design.unknown)} models of unknown size: {', '.join(design.unknown)}"
    )
    for note in design.notes:
        click.echo(f"note: {note}")


@cli.command()
@DATA_OPTION
@HYPOTHESIS_OPTION
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Output folder [default: reports/calibration-<hypothesis name>/].",
)
@click.option(
    "--scheduler",
    default=None,
    help="Address of an existing Dask scheduler [default: a local cluster].",
)
@click.option(
    "--workers",
    type=int,
    default=2,
    show_default=True,
    help="Workers of the local cluster.",
)
@click.option(
    "--draws",
    type=int,
    default=1000,
    show_default=True,
    help="Draws per chain of each refit.",
)
@click.option(
    "--tune",
    type=int,
    default=1000,
    show_default=True,
    help="Tuning steps per chain of each refit.",
)
@click.option(
    "--chains",
    type=int,
    default=2,
    show_default=True,
    help="Chains of each refit.",
)
@click.option(
    "--family",
    "only",
    multiple=True,
    help="Run only the hold-out of this name, or the ones holding out this family (repeatable).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["family", "ladder"]),
    help="Hold-out kinds: 'family' (a family with its same-size siblings), 'ladder' (a "
    "lab's own-API prices with one of its sizes kept) [both].",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice(["full", "no_speed", "no_price"]),
    help="Evidence variants [all three].",
)
@click.option(
    "--sbc",
    "simulations",
    type=int,
    default=100,
    show_default=True,
    help="Simulation-based calibration runs (0: none).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def calibrate(  # noqa: PLR0913 (click passes one keyword per option)
    *,
    data_dir,
    hypothesis,
    out_dir,
    scheduler,
    workers,
    draws,
    tune,
    chains,
    only,
    kinds,
    variants,
    simulations,
    overrides,
    quiet,
) -> None:
    """Hold out each family of known-size models (same-size siblings together) and
    each lab's own-API ladder, refit, and score the intervals per class and split.

    Results are written as fits finish; a rerun resumes where it stopped.
    Example: ``llmsize calibrate --family llama-2-70b --variant full``
    """
    _setup_logging(not quiet)
    from llmsize.studies.calibration.holdouts import VARIANT_LABELS
    from llmsize.studies.calibration.metrics import class_targets, targets
    from llmsize.studies.calibration.report import SPLIT_RULE, sentence
    from llmsize.studies.calibration.runner import calibrate as run

    result = run(
        data_dir=data_dir,
        hypothesis_path=hypothesis,
        out_dir=out_dir,
        overrides=list(overrides),
        draws=draws,
        tune=tune,
        chains=chains,
        workers=workers,
        scheduler=scheduler,
        only=list(only),
        kinds=list(kinds),
        variants=list(variants),
        simulations=simulations,
        progress=not quiet,
    )
    mets, classes, sbc, out_dir = result.metrics, result.classes, result.sbc, result.out_dir
    click.echo(mets.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    full = mets[mets["method"] == VARIANT_LABELS["full"]]
    if len(full):
        m = full.iloc[0]
        click.echo(sentence(m))
        checks = targets(m) + class_targets(classes, VARIANT_LABELS["full"], "all")
        for name, ok, detail in checks:
            click.echo(f"  {'holds' if ok else 'MISSED'}: {name}: {detail}")
        for split in ("choose", "score"):
            s = classes[
                (classes["method"] == VARIANT_LABELS["full"])
                & (classes["split"] == split)
                & (classes["grouping"] == "overall")
            ]
            if len(s):
                r = s.iloc[0]
                click.echo(
                    f"  {split} split: {int(r['n'])} rows, 90% coverage {r['coverage_90']:.0%} "
                    f"[{r['coverage_90_lo']:.0%}, {r['coverage_90_hi']:.0%}]"
                )
        click.echo(SPLIT_RULE.replace("**", ""))
    if sbc is not None:
        ranks, tests = sbc
        worst = tests.loc[tests["p_value"].idxmin()]
        click.echo(
            f"SBC: {len(ranks)} simulations, {int((ranks['divergences'] > 0).sum())} with "
            f"divergences; smallest uniformity p-value {worst['p_value']:.3f} "
            f"({worst['quantity']}) of {len(tests)} quantities"
        )
    click.echo(f"wrote {out_dir}")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@DATA_OPTION
@click.option(
    "--out",
    "out_dir",
    default="reports/compare",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Output folder.",
)
@click.option(
    "--reference",
    default=None,
    help="Hypothesis name the others are compared against [default: 'default' if given, "
    "else the first file].",
)
@sampler_options(
    whose="each hypothesis' [sampler]",
    draws="NUTS draws per chain of every fit",
    tune="NUTS tuning steps per chain",
    chains="NUTS chains",
    overrides="every hypothesis",
)
@CORES_OPTION
@click.option(
    "--cv-folds",
    type=click.IntRange(min=0),
    default=None,
    help="Folds of the cross-validation on known sizes that scores hypotheses of another "
    "model structure (no Bayes factor); 0: none [default: 5].",
)
@QUIET_OPTION
def compare(  # click passes one keyword per option
    *,
    files,
    data_dir,
    out_dir,
    reference,
    draws,
    tune,
    chains,
    seed,
    overrides,
    cores,
    cv_folds,
    quiet,
) -> None:
    """Fit several hypothesis files to the same data and compare them.

    Writes sizes per price date, Bayes factors (bridged and by reweighting,
    for hypotheses of the reference's structure), grouped K-fold
    cross-validation on the known sizes (for the others), PSIS-LOO, prior
    sensitivity and the public claims' probabilities.
    Example: ``llmsize compare models/*.toml``
    """
    _setup_logging(not quiet)
    from llmsize.studies.compare.runner import CompareSettings
    from llmsize.studies.compare.runner import compare as run

    start = time.perf_counter()
    ctx = click.get_current_context()
    command = " ".join(shlex.quote(a) for a in ["llmsize", str(ctx.info_name), *_given_args(ctx)])
    settings = CompareSettings.from_options(
        draws=draws, tune=tune, chains=chains, seed=seed, cores=cores,
        progress=_show_progress(quiet), cv_folds=cv_folds,
    )  # fmt: skip
    evidence = run(
        list(files),
        data_dir=data_dir,
        out_dir=Path(out_dir),
        settings=settings,
        overrides=list(overrides),
        reference=reference,
        command=command,
        progress=lambda i, n, name: log.info("[%d/%d] %s", i + 1, n, name),
    ).evidence
    cols = [
        c
        for c in (
            "hypothesis",
            "log_bf_bridged",
            "log_bf_bridged_se",
            "log_bf_reweighted",
            "elpd_cv_diff",
            "elpd_cv_diff_se",
            "elpd_diff_vs_ref",
            "elpd_diff_se",
            "max_pareto_k",
            "notes",
        )
        if c in evidence
    ]
    click.echo(evidence[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    click.echo(f"wrote {out_dir} in {time.perf_counter() - start:.0f} s")


def _given_args(ctx: click.Context) -> list[str]:
    """The options the user set on the command line, to record how a report was made."""
    out = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            out += [str(v) for v in value] if isinstance(value, tuple | list) else [str(value)]
            continue
        flag = param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]
        if getattr(param, "is_flag", False):
            if value:
                out.append(flag)
        elif isinstance(value, tuple | list):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def main() -> None:
    """The command line: parse ``sys.argv``, run the command, end with :class:`SystemExit`."""
    interrupts.install()
    cli(standalone_mode=True)


def run() -> NoReturn:
    """Entry point of the ``llmsize`` console script and of ``python -m llmsize``:
    :func:`main`, then the process ends at once with its exit status.

    When a command ends, every file it writes is written and closed, its worker
    processes and clusters are shut down and its lines are printed. What a normal
    exit would still do is tear the interpreter down object by object: the compiled
    model's machine code, PyTensor's graphs, the draws: about 1.5 s after the fit of a
    prior swap (``benchmarks/bench_prior_swap.py``). So the streams and logging are
    flushed and the process ends without it, as mypy's command line does.
    An exception other than :class:`SystemExit` (a bug) still ends the process the
    usual way, with its traceback.
    """
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exit_status(exc.code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def exit_status(code: object) -> int:
    """The status :class:`SystemExit` with ``code`` gives the process, as Python maps it:
    none is 0, a whole number itself, anything else is printed to stderr and gives 1.
    """
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1
