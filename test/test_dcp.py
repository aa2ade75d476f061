"""torch_ext.patch_dcp."""

import pytest
from torch.distributed.checkpoint import _experimental as dcp
from torch.distributed.checkpoint._experimental import checkpointer, utils

import torch_ext

UPSTREAM = utils.wrap_future
PATCHED_MODULES = [checkpointer, utils, dcp]


@pytest.fixture(autouse=True)
def upstream_restored():
    assert [module.wrap_future for module in PATCHED_MODULES] == [UPSTREAM] * 3
    yield
    for module in PATCHED_MODULES:
        module.wrap_future = UPSTREAM


def in_use():
    return [module.wrap_future for module in PATCHED_MODULES]


def test_context_manager_patches_and_restores():
    with torch_ext.patch_dcp():
        assert in_use() == [torch_ext.wrap_future] * 3
    assert in_use() == [UPSTREAM] * 3


def test_context_manager_restores_when_the_body_raises():
    with pytest.raises(OSError, match="save failed"):
        with torch_ext.patch_dcp():
            raise OSError("save failed")
    assert in_use() == [UPSTREAM] * 3


def test_plain_call_patches_until_restore():
    patch = torch_ext.patch_dcp()
    assert in_use() == [torch_ext.wrap_future] * 3
    patch.restore()
    assert in_use() == [UPSTREAM] * 3
    patch.restore()
    assert in_use() == [UPSTREAM] * 3


def test_nested_patches_restore_what_each_found():
    custom = object()
    checkpointer.wrap_future = custom
    with torch_ext.patch_dcp():
        with torch_ext.patch_dcp():
            assert checkpointer.wrap_future is torch_ext.wrap_future
        assert checkpointer.wrap_future is torch_ext.wrap_future
    assert checkpointer.wrap_future is custom

