"""Fixtures of the calibration studies: the tiny data plus a lab with its own API."""

from __future__ import annotations

import shutil

import pytest

from llmsize.inputs.data import load_dataset
from llmsize.physics.design import build_design

from ...conftest import FIXTURES_DIR

#: ``tests/fixtures/tiny`` plus LabM (its own API, three known sizes) and labs.csv.
CAL_DIR = FIXTURES_DIR / "calibration"


@pytest.fixture(scope="session")
def cal_data():
    return load_dataset(CAL_DIR)


@pytest.fixture(scope="session")
def cal_design(cal_data, default_hypothesis):
    return build_design(cal_data, default_hypothesis)


@pytest.fixture
def cal_copy(tmp_path):
    """A writable copy of ``tests/fixtures/calibration``."""
    dest = tmp_path / "calibration"
    shutil.copytree(CAL_DIR, dest)
    return dest
