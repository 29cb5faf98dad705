"""Shared fixtures: paths to the samples, the real-record corpus and the IAM oracle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def corpus_dir() -> Path | None:
    value = os.environ.get("IAMTRIM_CORPUS")
    if not value:
        default = ROOT.parent / "shared" / "corpus"
        return default if default.is_dir() else None
    path = Path(value)
    return path if path.is_dir() else None


def oracle_path() -> Path | None:
    value = os.environ.get("IAMTRIM_ORACLE")
    path = Path(value) if value else ROOT.parent / "shared" / "oracle" / "iam-oracle"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_dir()
    if path is None:
        pytest.skip("IAMTRIM_CORPUS not set (real-record tests need ../shared/corpus)")
    return path


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


# AWS: moto server, fake credentials, and the check of every API call against docs/permissions.md.
from tests.awsparts import aws_calls_are_listed, aws_endpoint, moto_server  # noqa: E402, F401
