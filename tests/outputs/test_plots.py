"""Figures drawn from panels in a worker process, as the report draws its two largest."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from llmsize.outputs import plots

from .test_markdown import stand_in_run


def test_a_figure_drawn_in_a_worker_process_is_the_one_drawn_here(
    tmp_path, tiny_design, default_hypothesis
):
    """The report draws the prior-posterior and predictive figures in a worker process
    from panels computed in the main one (``pipeline.report_workers``): the PNG must be
    the very one :func:`plots.plot_prior_posterior` and :func:`plots.plot_ppc` draw."""
    tree = stand_in_run(tiny_design, default_hypothesis)
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    cases = (
        (plots.plot_prior_posterior, plots.draw_prior_posterior, plots.prior_posterior_panels),
        (plots.plot_ppc, plots.draw_ppc, plots.ppc_panels),
    )
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)) as pool:
        for k, (plot, draw, panels) in enumerate(cases):
            here, there = tmp_path / f"here-{k}.png", tmp_path / f"there-{k}.png"
            plots.save(plot(tree, tiny_design), here)
            pool.submit(plots.draw_and_save, draw, panels(tree, tiny_design), there).result()
            assert there.read_bytes() == here.read_bytes()
            assert here.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ppc_panels_hold_the_quantiles_of_the_predictive_draws(tiny_design, default_hypothesis):
    tree = stand_in_run(tiny_design, default_hypothesis)
    panels = plots.ppc_panels(tree, tiny_design)
    obs = tree["observed_data"]
    pp = tree["posterior_predictive"]
    assert [p.var for p in panels][:2] == ["output_price", "input_price"]
    for p in panels:
        draws = pp[p.var].values.reshape(-1, obs[p.var].size)
        assert (p.observed == obs[p.var].values).all()
        assert (p.lo <= p.median).all()
        assert (p.median <= p.hi).all()
        # 5% of the draws of each observation lie below lo, 5% above hi.
        assert abs((draws < p.lo).mean() - 0.05) < 0.01
        assert abs((draws > p.hi).mean() - 0.05) < 0.01
        assert p.known.shape == p.observed.shape
