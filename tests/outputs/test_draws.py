"""The thinned draws committed with a report (``llmsize.outputs.draws``)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from llmsize.outputs.draws import MAX_BYTES, MAX_DRAWS, thinned_draws, thinning_step
from llmsize.outputs.io import read_posterior

from ..conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("chains", "draws", "limit", "step"),
    [
        (4, 4000, 1000, 16),  # the default run: 4 x 250 draws
        (2, 100, 1000, 1),  # fewer than the limit: all of them
        (3, 1000, 1000, 4),  # 333 per chain at most: every 4th, 3 x 250
        (1, 1001, 1000, 2),
        (64, 10, 1000, 1),
        (2000, 5, 1000, 5),  # more chains than the limit: one draw per chain
    ],
)
def test_thinning_step_by_hand(chains, draws, limit, step):
    assert thinning_step(chains, draws, limit) == step
    if chains <= limit:
        assert chains * -(-draws // step) <= limit


def test_thinning_step_refuses_an_empty_posterior():
    with pytest.raises(ValueError, match="at least one chain and one draw"):
        thinning_step(0, 10)


def test_the_draws_file_of_a_run(tiny_infer_subprocess, tiny_design):
    """draws.nc holds every reported quantity, every k-th draw of the posterior's
    chains, for the models of unknown size and their epochs only."""
    _, out = tiny_infer_subprocess
    saved = xr.open_dataset(out / "draws.nc", engine="h5netcdf").load()
    tree = read_posterior(out / "posterior.nc")
    post = tree["posterior"].to_dataset()
    assert set(saved.data_vars) == {
        "params_total_b", "params_active_b", "tokens_t", "p_bits", "p_hardware", "batch"
    }  # fmt: skip
    assert list(saved["unknown_model"].values) == list(tiny_design.unknown)
    assert set(saved["epoch_model"].values) == set(tiny_design.unknown)
    step = saved.attrs["draw_step"]
    assert saved.sizes["chain"] * saved.sizes["draw"] <= MAX_DRAWS
    for name in ("params_total_b", "p_bits", "batch"):
        expected = (
            post[name]
            .isel(draw=slice(None, None, step))
            .sel({d: saved[d].values for d in saved[name].dims if d in ("unknown_model", "epoch")})
        )
        # float32: a probability below about 1e-38 becomes 0 or a subnormal.
        np.testing.assert_allclose(saved[name].values, expected.values, rtol=1e-6, atol=1e-37)
    assert saved.attrs["data_sha256"] == tree.attrs["data_sha256"]
    assert "created_at" not in saved.attrs  # committed: no time of the run in it
    # As small for the tiny run as its units say; the default run's is checked below.
    assert saved["params_total_b"].attrs["units"] == "billions of parameters"


def test_thinned_draws_keep_each_chain_in_order(tiny_infer_subprocess, tiny_design):
    _, out = tiny_infer_subprocess
    tree = read_posterior(out / "posterior.nc")
    thin = thinned_draws(tree, tiny_design, max_draws=20)
    assert thin.sizes["chain"] == 2
    assert thin.sizes["draw"] == 10
    np.testing.assert_array_equal(thin["draw"].values, np.arange(0, 100, 10))


def test_the_committed_draws_are_small():
    """reports/default/draws.nc is committed: at most 2 MB, at most 1,000 draws."""
    path = REPO_ROOT / "reports" / "default" / "draws.nc"
    assert path.stat().st_size <= MAX_BYTES
    saved = xr.open_dataset(path, engine="h5netcdf")
    assert saved.sizes["chain"] * saved.sizes["draw"] <= MAX_DRAWS
    assert saved.sizes["unknown_model"] >= 10
