"""torch.ops.torch_ext.wrap_future in TorchScript, saved and loaded in C++."""

import subprocess

import pytest
import torch

import bounded
import torch_ext  # noqa: F401  (registers the op)


def neg(x: torch.Tensor) -> torch.Tensor:
    return -x


def fail(x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("staging exploded")


class ForkAndWrap(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        staged = torch.jit.fork(neg, x)
        done = torch.ops.torch_ext.wrap_future(staged)
        torch.jit.wait(done)
        return torch.jit.wait(staged)


class ForkFailAndWrap(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        done = torch.ops.torch_ext.wrap_future(torch.jit.fork(fail, x))
        torch.jit.wait(done)
        return x


def test_scripted_fork_and_wait():
    module = torch.jit.script(ForkAndWrap())
    assert torch.equal(bounded.call(module, torch.ones(3), what="the scripted waits"), -torch.ones(3))
    assert "torch_ext::wrap_future" in str(module.graph)


def test_scripted_error_reaches_the_wrapped_future():
    module = torch.jit.script(ForkFailAndWrap())
    with pytest.raises(RuntimeError, match="staging exploded"):
        bounded.call(module, torch.ones(1), what="the scripted wait")


def test_eager_future_into_scripted_code():
    @torch.jit.script
    def wrap(fut: torch.jit.Future[torch.Tensor]) -> torch.jit.Future[None]:
        return torch.ops.torch_ext.wrap_future(fut)

    source = torch.futures.Future()
    wrapped = wrap(source)
    assert not wrapped.done()
    source.set_result(torch.ones(1))
    assert bounded.wait(wrapped, "the wrap") is None


def test_wrong_type_in_script_is_a_compile_error_naming_future():
    def wrap_tensor(x: torch.Tensor) -> torch.jit.Future[None]:
        return torch.ops.torch_ext.wrap_future(x)

    with pytest.raises(RuntimeError, match=r"Future\[t\].*Tensor|Tensor.*Future"):
        torch.jit.script(wrap_tensor)


def test_non_future_from_python_names_the_expected_type():
    with pytest.raises(RuntimeError, match=r"Expected a value of type 'Future\[t\]'.*'int'"):
        torch.ops.torch_ext.wrap_future(3)


@pytest.mark.parametrize(
    "module, expected",
    [(ForkAndWrap(), "result: -1\n-1\n[ CPUFloatType{2} ]"), (ForkFailAndWrap(), "error: ")],
    ids=["value", "error"],
)
def test_saved_module_runs_in_python_and_in_cpp(module, expected, tmp_path, cpp_build):
    path = tmp_path / "module.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    loaded = torch.jit.load(str(path))
    if isinstance(module, ForkAndWrap):
        assert torch.equal(bounded.call(loaded, torch.ones(2), what="the loaded module's waits"), -torch.ones(2))
    run = subprocess.run(
        [str(cpp_build / "test" / "cpp" / "run_scripted_module"), str(path), "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout.startswith(expected), run.stdout + run.stderr
    if expected.startswith("error"):
        assert run.returncode == 1 and "staging exploded" in run.stdout
    else:
        assert run.returncode == 0
