"""Shared fixtures for the black-box tests: where the built artefacts are."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("HALFKEY_BUILD", ROOT / "build"))
    if not (path / "build.ninja").exists():
        pytest.fail(f"no meson build directory at {path}: run scripts/setup")
    return path
