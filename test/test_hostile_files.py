"""Files from a stranger: real torch.save output, then edited as an attacker
would (pickle opcodes, zip records, special files). torch_ext.load refuses
each with an error naming the file, or reads what torch.load reads; what
torch.load does with the same file is checked beside it. Loads that could
crash, hang or take all the memory run in a child process with a memory
limit and a timeout."""

import os
import pickle
import pickletools
import resource
import socket
import struct
import subprocess
import sys
import warnings
import zipfile

import pytest
import torch
import torch.distributed.checkpoint as dcp

import torch_ext

# kMaxDepth (torch_ext/csrc/state/state_value.h).
MAX_DEPTH = 512

CHILD = """
import sys, torch_ext
try:
    torch_ext.load(sys.argv[1])
except RuntimeError as error:
    print("refused:", error)
else:
    print("loaded")
"""


def load_in_child(path, timeout=120):
    """What torch_ext.load says of `path`, loaded in a child process with a
    4 GiB address space; a crash or a hang fails the test."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"torch_ext.load({str(path)!r}) still runs after {timeout} s: it hangs")
    assert result.returncode == 0, f"torch_ext.load ended with {result.returncode}: {result.stderr[-3000:]}"
    return result.stdout


def records(path):
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_zip(path, entries):
    """An archive of (name, data) in this order, duplicates kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return path


def with_pickle(path, out, edit):
    """`path` with its data.pkl replaced by edit(data.pkl)."""
    return write_zip(out, [(n, edit(d) if n.endswith("/data.pkl") else d) for n, d in records(path)])


def into_the_dict(data, value):
    """The pickle `data` of a dict, with one more entry first, 'x': the item
    that the opcodes `value` push (torch.load reads no POP or DUP, so the item
    stays)."""
    assert data[2:6] == b"}q\x00("  # EMPTY_DICT, BINPUT 0, MARK of its SETITEMS
    return data[:6] + b"X\x01\x00\x00\x00x" + value + data[6:]


def ops(data):
    """(name, argument, start, end) of each opcode of the pickle `data`."""
    listed = list(pickletools.genops(data))
    ends = [pos for _, _, pos in listed[1:]] + [len(data)]
    return [(op.name, arg, pos, end) for (op, arg, pos), end in zip(listed, ends)]


def replace_ops(data, start, end, new):
    return data[:start] + new + data[end:]


@pytest.fixture
def saved(tmp_path):
    """A real torch.save file: float, double and int64 tensors."""
    state = {"a": torch.arange(4.0), "b": torch.arange(2, dtype=torch.float64), "i": torch.arange(3)}
    torch.save(state, tmp_path / "saved.pt")
    return tmp_path / "saved.pt", state


def assert_loads_as(path, state, extra=()):
    """torch.load reads `state` from `path` (and the keys `extra` first)."""
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == [*extra, *state]
    for key in state:
        assert loaded[key].dtype == state[key].dtype and torch.equal(loaded[key], state[key]), key


# Stack overflows: nesting that a file controls.

def test_a_million_nested_argument_tuples_are_refused_not_a_crash(saved, tmp_path):
    path, state = saved
    # TUPLE1 a million times around a global's argument tuple.
    hostile = with_pickle(path, tmp_path / "nested.pt",
                          lambda p: into_the_dict(p, b"ctorch\nfloat32\n" + b"\x85" * 1_000_000))
    assert_loads_as(hostile, state, extra=["x"])  # torch.load reads it
    out = load_in_child(hostile)
    assert f"'{hostile}'" in out and f"nested deeper than {MAX_DEPTH} levels" in out, out


@pytest.mark.parametrize("nesting", [b"]" * 1_000_000 + b"a" * 999_999,
                                     b"(" * 1_000_000 + b")" + b"t" * 1_000_000,
                                     b"}" + b"K\x00}" * 500_000 + b"s" * 500_000],
                         ids=["lists", "tuples", "dicts"])
def test_a_million_nested_containers_are_refused_not_a_crash(saved, tmp_path, nesting):
    path, state = saved
    hostile = with_pickle(path, tmp_path / "nested.pt", lambda p: into_the_dict(p, nesting))
    out = load_in_child(hostile)
    assert f"'{hostile}'" in out and f"nested deeper than {MAX_DEPTH} levels" in out, out


# Memo bombs: t_i = (t_{i-1}, t_{i-1}), 2^64 items if copied.

def memo_bomb(levels=64):
    bomb = b"ctorch\nfloat32\n\x85r" + struct.pack("<I", 1000)
    for i in range(levels):  # t_i on the stack: its memo get beside it, TUPLE2, put
        bomb += b"j" + struct.pack("<I", 1000 + i) + b"\x86r" + struct.pack("<I", 1001 + i)
    return bomb


def test_a_memo_bomb_of_argument_tuples_is_refused_at_once(saved, tmp_path):
    path, state = saved
    hostile = with_pickle(path, tmp_path / "bomb.pt", lambda p: into_the_dict(p, memo_bomb()))
    assert_loads_as(hostile, state, extra=["x"])  # torch.load shares, and reads it
    out = load_in_child(hostile)
    assert f"'{hostile}'" in out and "expand the value to more than" in out, out


def test_a_dup_bomb_of_argument_tuples_is_refused_at_once(saved, tmp_path):
    path, _ = saved
    hostile = with_pickle(path, tmp_path / "bomb.pt",
                          lambda p: into_the_dict(p, b"ctorch\nfloat32\n\x85" + b"2\x86" * 64))
    with pytest.raises(pickle.UnpicklingError, match="Unsupported operand 50"):  # torch.load reads no DUP
        torch.load(hostile, weights_only=True)
    out = load_in_child(hostile)
    assert f"'{hostile}'" in out and "expand the value to more than" in out, out


# Special files.

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    out = load_in_child(fifo, timeout=60)
    assert f"'{fifo}'" in out and "is a FIFO (named pipe), not a regular file" in out, out


def test_other_special_files_are_refused_saying_what_they_are(tmp_path):
    with pytest.raises(RuntimeError, match=r"'/dev/null'.*is a character device, not a regular file"):
        torch_ext.load("/dev/null")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(RuntimeError, match=rf"'{tmp_path / 'sock'}'.*is a socket, not a regular file"):
            torch_ext.load(tmp_path / "sock")
    finally:
        server.close()
    (tmp_path / "folder").mkdir()
    with pytest.raises(RuntimeError, match=rf"'{tmp_path / 'folder'}'.*is a folder without the \.metadata.*"
                                           r"\*\.safetensors\.index\.json or model\.safetensors.*step_<n> folders"):
        torch_ext.load(tmp_path / "folder")


# The format seam: each format is told from what is on disk (never from
# the name) and read by its own reader.

def test_a_dcp_checkpoint_is_read_as_one(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no process group: upstream warns
        dcp.save({"w": torch.ones(2)}, checkpoint_id=str(tmp_path / "ckpt.pt"))
    assert torch.equal(torch_ext.load(tmp_path / "ckpt.pt")["w"], torch.ones(2))


def test_a_safetensors_file_is_read_as_one(tmp_path):
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    (tmp_path / "w.pt").write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.5, -2.0))
    assert torch.equal(torch_ext.load(tmp_path / "w.pt")["w"], torch.tensor([1.5, -2.0]))
    # A header length past the end of the file is no safetensors file: read as a zip, and refused.
    (tmp_path / "bad").write_bytes(struct.pack("<Q", 1000) + header)
    with pytest.raises(RuntimeError, match=rf"'{tmp_path / 'bad'}'"):
        torch_ext.load(tmp_path / "bad")


# Archives torch.load and a naive reader would read differently. Ours are
# refused, naming what is ambiguous; torch.load's reading is checked beside.

FOURS = struct.pack("<4f", 4, 4, 4, 4)


def test_a_record_outside_the_folder_is_refused_as_torch_refuses_it(saved, tmp_path):
    path, _ = saved
    entries = [(n, d) for n, d in records(path) if not n.endswith("/data/0")] + [("data/0", FOURS)]
    hostile = write_zip(tmp_path / "outside.pt", entries)
    with pytest.raises(RuntimeError, match="not in a subdirectory"):
        torch.load(hostile, weights_only=True)
    with pytest.raises(RuntimeError, match=rf"'{hostile}'.*record 'data/0' is outside the folder 'saved/'"):
        torch_ext.load(hostile)


def test_a_shadowing_record_listed_first_is_refused_as_torch_refuses_it(saved, tmp_path):
    path, _ = saved
    hostile = write_zip(tmp_path / "shadow.pt", [("data/0", FOURS)] + records(path))
    with pytest.raises(RuntimeError, match="hasRecord"):
        torch.load(hostile, weights_only=True)
    with pytest.raises(RuntimeError, match=rf"'{hostile}'.*record 'saved/data\.pkl' is outside the folder 'data/'"):
        torch_ext.load(hostile)


@pytest.mark.parametrize("twin", ["saved/data/0", "saved/DATA/0"])
def test_two_records_of_one_name_are_refused_where_torch_reads_the_last(saved, tmp_path, twin):
    path, state = saved
    entries = []
    for name, data in records(path):
        entries.append((name, data))
        if name == "saved/data/0":
            entries.append((twin, FOURS))
    hostile = write_zip(tmp_path / "twins.pt", entries)
    # torch looks names up ignoring case, and finds the last one listed.
    assert torch.equal(torch.load(hostile, weights_only=True)["a"], torch.full((4,), 4.0))
    with pytest.raises(RuntimeError, match=rf"'{hostile}'.*records 'saved/data/0' and '{twin}' have the same name"):
        torch_ext.load(hostile)


def test_a_name_in_another_case_is_read_as_torch_reads_it(saved, tmp_path):
    path, state = saved
    hostile = write_zip(tmp_path / "case.pt", [(n.replace("data/0", "DATA/0"), d) for n, d in records(path)])
    assert_loads_as(hostile, state)
    loaded = torch_ext.load(hostile)
    assert torch.equal(loaded["a"], state["a"])


def test_a_local_header_naming_another_record_is_refused(saved, tmp_path):
    path, state = saved
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x03\x04")
    while data[at + 30:at + 42] != b"saved/data/0":  # the local header of data/0
        at = data.find(b"PK\x03\x04", at + 4)
    data[at + 30:at + 42] = b"saved/data/9"
    (tmp_path / "local.pt").write_bytes(data)
    assert_loads_as(tmp_path / "local.pt", state)  # torch reads the central directory only
    with pytest.raises(RuntimeError, match=r"local header of record 'saved/data/0' names it 'saved/data/9'"):
        torch_ext.load(tmp_path / "local.pt")


def test_one_storage_used_with_two_dtypes_is_refused_where_torch_types_it_by_its_first_use(saved, tmp_path):
    path, state = saved
    # "b" (2 doubles, 16 bytes) made to use "a"'s storage '0' (4 floats, 16 bytes) as a DoubleStorage.
    hostile = with_pickle(path, tmp_path / "dtypes.pt",
                          lambda p: p.replace(b"X\x01\x00\x00\x001", b"X\x01\x00\x00\x000", 1))
    loaded = torch.load(hostile, weights_only=True)
    assert loaded["b"].dtype == torch.float32 and torch.equal(loaded["b"], torch.tensor([0.0, 1.0]))
    with pytest.raises(RuntimeError, match=rf"'{hostile}'.*storage '0' is used as torch\.FloatStorage and as torch\.DoubleStorage"):
        torch_ext.load(hostile)


# Errors that escape from tensor construction name the file.

def tensor_ops(data, index):
    """The opcodes of the pickle `data`, and where the `index`-th tensor's storage is."""
    listed = ops(data)
    persids = [i for i, op in enumerate(listed) if op[0] == "BINPERSID"]
    return listed, persids[index]


def test_sizes_whose_product_overflows_with_a_zero_stride_fail_naming_the_file(saved, tmp_path):
    path, _ = saved

    def overflow(data):
        # "i": offset, then size (3,) and stride (1,), each a TUPLE1 and its BINPUT
        listed, persid = tensor_ops(data, 2)
        assert [op[0] for op in listed[persid + 2:persid + 8]] == ["BININT1", "TUPLE1", "BINPUT"] * 2
        huge = b"\x8a\x05\x00\x00\x00\x00\x01"  # 2**32
        return replace_ops(data, listed[persid + 2][2], listed[persid + 7][3], huge + huge + b"\x86K\x00K\x00\x86")

    hostile = with_pickle(path, tmp_path / "overflow.pt", overflow)
    with pytest.raises(RuntimeError):
        torch.load(hostile, weights_only=True)
    with pytest.raises(RuntimeError, match=rf"'{hostile}'.*a tensor of more than 2\*\*63 - 1 elements"):
        torch_ext.load(hostile)


def test_requires_grad_on_an_integer_tensor_fails_naming_the_file(saved, tmp_path):
    path, _ = saved

    def requires_grad(data):
        listed, persid = tensor_ops(data, 2)
        flag = next(op for op in listed[persid:] if op[0] == "NEWFALSE")
        return replace_ops(data, flag[2], flag[3], b"\x88")

    hostile = with_pickle(path, tmp_path / "grad.pt", requires_grad)
    with pytest.raises(RuntimeError, match="floating point"):
        torch.load(hostile, weights_only=True)
    with pytest.raises(RuntimeError, match=rf"'{hostile}'.*Long with requires_grad=True, which torch refuses"):
        torch_ext.load(hostile)
