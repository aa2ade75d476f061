import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cpp_build() -> pathlib.Path:
    """The CMake build folder `make test` made (TORCH_EXT_CPP_BUILD)."""
    path = pathlib.Path(os.environ.get("TORCH_EXT_CPP_BUILD", ROOT / "build" / "cpp"))
    if not (path / "CMakeCache.txt").is_file():
        pytest.fail(f"no CMake build at {path}: run `make test`, or set TORCH_EXT_CPP_BUILD")
    return path
