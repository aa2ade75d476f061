"""The installed CMake package, used by a downstream project, beside Python."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(cpp_build, tmp_path_factory):
    """Installs the CMake build, then builds test/downstream against it."""
    prefix = tmp_path_factory.mktemp("prefix")
    run("cmake", "--install", str(cpp_build), "--prefix", str(prefix))
    downstream = tmp_path_factory.mktemp("downstream")
    run(
        "cmake", "-S", os.path.join(ROOT, "test", "downstream"), "-B", str(downstream),
        f"-DCMAKE_PREFIX_PATH={prefix};{torch.utils.cmake_prefix_path}",
    )
    run("cmake", "--build", str(downstream), "-j", "2")
    return prefix, downstream


def python(code):
    return run(sys.executable, "-c", textwrap.dedent(code) + textwrap.dedent(LOADED_COPIES), cwd=ROOT)


def test_downstream_project_finds_the_package_and_the_op(installed):
    _, downstream = installed
    assert run(str(downstream / "downstream_app")).strip() == "downstream ok"


LOADED_COPIES = """
    import torch
    with open("/proc/self/maps") as maps:
        copies = {line.split()[-1] for line in maps if line.rstrip().endswith("libtorch_ext.so")}
    print(len(copies), torch.ops.torch_ext.wrap_future(torch.futures.Future()).done())
"""


def test_cpp_library_loaded_first_is_reused_by_the_python_module(installed):
    prefix, _ = installed
    out = python(f"""
        import ctypes, torch
        ctypes.CDLL("{prefix}/lib/libtorch_ext.so", mode=ctypes.RTLD_GLOBAL)
        import torch_ext
    """)
    assert out.split() == ["1", "False"]


def test_cpp_extension_loaded_after_the_python_module_shares_its_library(installed):
    _, downstream = installed
    out = python(f"""
        import ctypes, torch, torch_ext
        plugin = ctypes.CDLL("{downstream}/libdownstream_plugin.so")
        assert plugin.downstream_plugin_check() == 1
    """)
    assert out.split() == ["1", "False"]
