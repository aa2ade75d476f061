import faulthandler
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# How long pytest-timeout's timer thread has to report a timeout before the
# watchdog below ends the process.
WATCHDOG_GRACE_S = 30
WATCHDOG_STDERR = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def cpp_build() -> pathlib.Path:
    """The CMake build folder `make test` made (TORCH_EXT_CPP_BUILD)."""
    path = pathlib.Path(os.environ.get("TORCH_EXT_CPP_BUILD", ROOT / "build" / "cpp"))
    if not (path / "CMakeCache.txt").is_file():
        pytest.fail(f"no CMake build at {path}: run `make test`, or set TORCH_EXT_CPP_BUILD")
    return path


def pytest_configure(config):
    # While a test runs, pytest captures fd 2: the watchdog writes to a copy
    # of the terminal's.
    config.stash[WATCHDOG_STDERR] = os.dup(2)


def pytest_unconfigure(config):
    os.close(config.stash[WATCHDOG_STDERR])


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """Arms faulthandler's watchdog beside pytest-timeout's timer.

    pytest-timeout's timer thread needs the GIL, so a test that hangs holding
    it (a GIL deadlock) would hang the run; faulthandler's watchdog needs no
    GIL: it dumps every thread's stack and exits.
    """
    if settings.timeout:
        faulthandler.dump_traceback_later(
            settings.timeout + WATCHDOG_GRACE_S, exit=True, file=item.config.stash[WATCHDOG_STDERR]
        )
    # None: pytest-timeout arms its own timer as well.


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item):
    faulthandler.cancel_dump_traceback_later()
