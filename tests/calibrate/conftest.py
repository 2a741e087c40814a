"""Shared fixtures of the prior tests: calibrations are fitted once per session."""

from __future__ import annotations

import pytest

from loratwin.calibrate.prior import PriorCalibration, calibrate
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile


@pytest.fixture(scope="session")
def llama() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


@pytest.fixture(scope="session")
def qwen() -> Profile:
    return load_profile("qwen-2.5-7b-instruct")


@pytest.fixture(scope="session")
def calib_llama(llama: Profile) -> PriorCalibration:
    return calibrate([llama])


@pytest.fixture(scope="session")
def calib_qwen(qwen: Profile) -> PriorCalibration:
    return calibrate([qwen])


@pytest.fixture(scope="session")
def calib_both(llama: Profile, qwen: Profile) -> PriorCalibration:
    return calibrate([llama, qwen])
