"""Fixtures and markers of the end-to-end tier (the helpers live in harness.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import toolchain_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def tc_env() -> dict[str, str]:
    return toolchain_env()


@pytest.fixture(scope="session")
def e2e_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("pulumi-state")
    yield path
    shutil.rmtree(path, ignore_errors=True)
