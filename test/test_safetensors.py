"""safetensors from Python and C++, side by side with the safetensors package,
huggingface_hub and transformers in the same process: each reads the other's
files bitwise; our CRC32s catch what the package cannot; a Hugging Face
model round-trips through a sharded folder."""

import json
import pathlib
import struct
import subprocess

import pytest
import safetensors
import safetensors.torch
import torch

import torch_ext
import torch_ext.safetensors as st

# Every torch dtype the safetensors package writes.
DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.bool,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
    torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
    torch.float8_e8m0fnu, torch.float4_e2m1fn_x2,
]


def random_of(dtype, shape, generator):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    count = torch.Size(shape).numel() * dtype.itemsize
    return torch.randint(0, 256, (count,), dtype=torch.uint8, generator=generator).view(dtype).reshape(shape)


def every_dtype():
    """A tensor of each dtype, a 0-dim one and an empty one: every bit pattern, NaNs included."""
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        tensors[name] = random_of(dtype, (3, 5), generator)
        if dtype != torch.float4_e2m1fn_x2:  # a 0-dim pair of float4 has no safetensors shape
            tensors[f"{name}.scalar"] = random_of(dtype, (), generator)
        tensors[f"{name}.empty"] = torch.empty((0, 4), dtype=dtype)
    return tensors


def raw(tensor):
    return tensor.contiguous().view(-1).view(torch.uint8) if tensor.numel() else torch.empty(0, dtype=torch.uint8)


def assert_bitwise(expected, got):
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert torch.equal(raw(got[name]), raw(tensor)), name


def header_of(path):
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:], length


def cpp_dump(cpp_build, path):
    """What the C++ reader reads: {name: (dtype, shape, bytes)}, metadata; fails on a CRC32."""
    result = subprocess.run([str(cpp_build / "test" / "cpp" / "safetensors_tool"), "dump", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    tensors, metadata = {}, {}
    for line in result.stdout.splitlines():
        fields = line.split(" ")
        if fields[0] == "metadata":
            metadata[fields[1]] = " ".join(fields[2:])
        else:
            name, dtype, shape, data = (fields + [""])[:4]
            tensors[name] = (dtype, json.loads(shape), bytes.fromhex(data))
    return tensors, metadata


def assert_cpp_reads(cpp_build, path, expected):
    tensors, _ = cpp_dump(cpp_build, path)
    assert list(tensors) == list(expected)
    for name, tensor in expected.items():
        _, shape, data = tensors[name]
        assert shape == list(tensor.shape), name
        assert data == raw(tensor).numpy().tobytes(), name


def test_files_of_the_package_are_read_bitwise_in_python_and_cpp(tmp_path, cpp_build):
    tensors = every_dtype()
    path = tmp_path / "theirs.safetensors"
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt", "source": "package"})
    theirs = safetensors.torch.load_file(path)
    assert_bitwise(theirs, st.load_file(path))  # the same keys in the same order, the same bytes
    assert_bitwise(theirs, {name: tensors[name] for name in theirs})
    file = st.SafetensorsFile(path)
    assert file.metadata == {"format": "pt", "source": "package"}
    assert sorted(file.unverifiable) == sorted(tensors)  # the package writes no CRC32
    assert file.verify().ok and file.verify().verified == []
    assert_cpp_reads(cpp_build, path, theirs)


def test_the_package_reads_ours_laid_out_as_it_lays_out_its_own(tmp_path):
    tensors = every_dtype()
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    st.save_file(tensors, ours, metadata={"source": "torch_ext"})
    assert_bitwise(tensors, {name: safetensors.torch.load_file(ours)[name] for name in tensors})
    with safetensors.safe_open(ours, framework="pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == "pt" and metadata["source"] == "torch_ext"
    assert all(f"torch_ext.crc32.{name}" in metadata for name in tensors)

    # With our metadata, the package writes the same header (its metadata
    # order is a hash map's) and the very same data bytes.
    safetensors.torch.save_file(tensors, theirs, metadata=metadata)
    our_header, our_data, our_length = header_of(ours)
    their_header, their_data, their_length = header_of(theirs)
    assert our_header == their_header
    assert list(our_header)[1:] == list(their_header)[1:]  # tensors in the same order
    assert our_length == their_length and our_length % 8 == 0
    assert our_data == their_data


def test_cpp_writes_what_the_package_reads(tmp_path, cpp_build):
    tensors = every_dtype()
    theirs, resaved = tmp_path / "theirs.safetensors", tmp_path / "resaved.safetensors"
    safetensors.torch.save_file(tensors, theirs, metadata={"format": "pt", "k": "v"})
    tool = cpp_build / "test" / "cpp" / "safetensors_tool"
    subprocess.run([str(tool), "resave", str(theirs), str(resaved)], check=True, timeout=120)
    assert_bitwise(safetensors.torch.load_file(theirs), safetensors.torch.load_file(resaved))
    assert cpp_dump(cpp_build, resaved)[1] == {"format": "pt", "k": "v"}
    assert st.SafetensorsFile(resaved).unverifiable == []


def test_a_flipped_bit_is_caught_by_our_crc_and_not_by_the_package(tmp_path, cpp_build):
    path = tmp_path / "flipped.safetensors"
    st.save_file({"weight": torch.arange(4096, dtype=torch.float32), "bias": torch.ones(8)}, path)
    offset = st.SafetensorsFile(path).info("weight").offset
    data = bytearray(path.read_bytes())
    data[offset + 4000] ^= 0x04
    path.write_bytes(bytes(data))

    assert not torch.equal(safetensors.torch.load_file(path)["weight"], torch.arange(4096, dtype=torch.float32))
    with pytest.raises(RuntimeError, match=f"safetensors file '{path}'.*tensor 'weight' fails its CRC32 check"):
        st.load_file(path)
    verification = st.SafetensorsFile(path).verify()
    assert not verification.ok
    assert [(f.name, f.file) for f in verification.failed] == [("weight", str(path))]
    assert verification.verified == ["bias"]
    assert st.load_file(path, keys=["bias"])["bias"].equal(torch.ones(8))  # only what is named is read
    assert not st.load_file(path, verify=False)["weight"].equal(torch.arange(4096, dtype=torch.float32))
    result = subprocess.run([str(cpp_build / "test" / "cpp" / "safetensors_tool"), "dump", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "tensor 'weight' fails its CRC32 check" in result.stderr


def test_the_header_is_listed_without_reading_the_data(tmp_path):
    path = tmp_path / "listed.safetensors"
    st.save_file({"b": torch.zeros(2, 3), "a": torch.zeros(4, dtype=torch.float64)}, path, metadata={"k": "v"})
    file = st.SafetensorsFile(path)
    assert file.keys() == ["a", "b"]
    a, b = file.tensors
    assert (a.dtype, a.torch_dtype, a.shape, a.nbytes) == ("F64", torch.float64, (4,), 32)
    assert (b.dtype, b.torch_dtype, b.shape, b.nbytes) == ("F32", torch.float32, (2, 3), 24)
    assert b.offset == a.offset + 32 and a.crc32 is not None
    assert file.metadata == {"format": "pt", "k": "v"}
    loaded = file.load(keys=["b"])
    assert list(loaded) == ["b"]
    with pytest.raises(ValueError, match="has no entry 'c'"):
        file.load(keys=["c"])


def test_tensors_are_copy_on_write_views_of_the_file(tmp_path):
    path = tmp_path / "cow.safetensors"
    st.save_file({"w": torch.zeros(1024)}, path)
    before = path.read_bytes()
    loaded = st.load_file(path)
    loaded["w"].add_(1)
    assert loaded["w"].sum() == 1024
    assert path.read_bytes() == before


def test_what_the_format_cannot_hold_is_refused_naming_the_entry(tmp_path):
    path = tmp_path / "refused.safetensors"
    weight = torch.ones(4, 4)
    with pytest.raises(ValueError, match="entries 'embed.weight' and 'head.weight' share memory"):
        st.save_file({"embed.weight": weight, "head.weight": weight}, path)
    with pytest.raises(TypeError, match="entry 'model' is a dict"):
        torch_ext.save({"model": {"w": weight}}, path, format="safetensors")
    with pytest.raises(TypeError, match="entry 'step' is an int"):
        st.save_file({"step": 3}, path)
    with pytest.raises(TypeError, match="entry 'z' is a ComplexDouble tensor"):
        st.save_file({"z": torch.zeros(2, dtype=torch.complex128)}, path)
    with pytest.raises(TypeError, match="metadata maps str to str"):
        st.save_file({"w": weight}, path, metadata={"epoch": 3})
    assert list(tmp_path.iterdir()) == []


def test_hostile_headers_raise_naming_the_file(tmp_path):
    path = tmp_path / "hostile.safetensors"
    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(12))
    with pytest.raises(RuntimeError, match=f"the safetensors file '{path}' is corrupted.*tensor 'b'.*overlaps"):
        st.SafetensorsFile(path)
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(RuntimeError, match=f"'{path}'.*beyond the format's 100000000"):
        st.load_file(path)


def test_torch_ext_save_writes_safetensors_files_and_folders(tmp_path):
    tensors = {"a": torch.randn(100), "b": torch.randn(100)}
    torch_ext.save(tensors, tmp_path / "one.safetensors", format="safetensors", metadata={"k": "v"})
    assert_bitwise(tensors, safetensors.torch.load_file(tmp_path / "one.safetensors"))
    torch_ext.save(tensors, tmp_path / "folder", format="safetensors", max_shard_size=400)
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    assert_bitwise(tensors, st.load_folder(tmp_path / "folder"))
    with pytest.raises(ValueError, match="format must be 'torch' or 'safetensors'"):
        torch_ext.save(tensors, tmp_path / "x", format="npz")
    with pytest.raises(ValueError, match="safetensors' options"):
        torch_ext.save(tensors, tmp_path / "x", metadata={"k": "v"})


def test_torch_ext_load_tells_safetensors_from_what_is_on_disk(tmp_path):
    """The format rule (csrc/format/detect_format.h): a file of the package's, whatever its name; a folder of
    huggingface_hub's shards with its index, or with an index of another name; each read through our reader."""
    from huggingface_hub import save_torch_state_dict

    tensors = {f"layers.{i}.weight": torch.randn(64, 64) for i in range(4)} | {"norm": torch.ones(64)}
    safetensors.torch.save_file(tensors, tmp_path / "weights.bin")
    assert_bitwise(tensors, torch_ext.load(tmp_path / "weights.bin"))
    assert list(torch_ext.load(tmp_path / "weights.bin", keys=["norm"])) == ["norm"]

    (tmp_path / "hub").mkdir()
    save_torch_state_dict(tensors, tmp_path / "hub", max_shard_size="40KB")
    assert len(list((tmp_path / "hub").glob("*.safetensors"))) > 1
    loaded = torch_ext.load(tmp_path / "hub")
    assert_bitwise({name: tensors[name] for name in loaded}, loaded)
    assert sorted(loaded) == sorted(tensors)
    part = torch_ext.load(tmp_path / "hub", keys=["layers.3.weight", "norm"])
    assert sorted(part) == ["layers.3.weight", "norm"]
    (tmp_path / "hub" / "model.safetensors.index.json").rename(tmp_path / "hub" / "unet.safetensors.index.json")
    assert sorted(torch_ext.load(tmp_path / "hub")) == sorted(tensors)

    # Ours carry CRC32s, which torch_ext.load checks unless told not to.
    torch_ext.save(tensors, tmp_path / "ours", format="safetensors", max_shard_size="40KB")
    shard = st.SafetensorsFolder(tmp_path / "ours").shard_of("norm")
    data = bytearray(pathlib.Path(shard).read_bytes())
    data[st.SafetensorsFile(shard).info("norm").offset + 5] ^= 0x04
    pathlib.Path(shard).write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=f"'{shard}'.*'norm' fails its CRC32 check"):
        torch_ext.load(tmp_path / "ours")
    assert not torch.equal(torch_ext.load(tmp_path / "ours", verify=False)["norm"], tensors["norm"])


def test_sizes_read_as_huggingface_hub_reads_them():
    assert st.parse_size("5GB") == 5 * 10**9
    assert st.parse_size("2GiB") == 2 * 2**30
    assert st.parse_size("1.5MB") == 1_500_000
    assert st.parse_size(1024) == 1024
    for bad in ("5XB", "GB", "-1GB", 0):
        with pytest.raises(ValueError):
            st.parse_size(bad)


def test_a_folder_written_by_huggingface_hub_is_read(tmp_path, cpp_build):
    from huggingface_hub import save_torch_state_dict

    tensors = {f"layers.{i}.weight": torch.randn(64, 64) for i in range(5)} | {"norm": torch.ones(64)}
    save_torch_state_dict(tensors, tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) == 3
    folder = st.SafetensorsFolder(tmp_path)
    assert folder.total_size == index["metadata"]["total_size"]
    assert [pathlib.Path(shard.path).name for shard in folder.shards] == sorted(shards)
    loaded = folder.load()
    assert sorted(loaded) == sorted(tensors)
    assert_bitwise({name: tensors[name] for name in loaded}, loaded)
    assert sorted(folder.verify().unverifiable) == sorted(tensors)
    cpp, _ = cpp_dump(cpp_build, tmp_path)
    assert sorted(cpp) == sorted(tensors)


def test_our_shards_match_huggingface_hubs(tmp_path):
    from huggingface_hub import save_torch_state_dict

    tensors = {"embed": torch.randn(300, 64), "a": torch.randn(64, 64), "b": torch.randn(64), "c": torch.randn(64, 64),
               "d": torch.randn(64, 32)}
    (tmp_path / "hub").mkdir()
    save_torch_state_dict(tensors, tmp_path / "hub", max_shard_size="30KB")
    st.save_folder(tensors, tmp_path / "ours", max_shard_size="30KB")
    hub = json.loads((tmp_path / "hub" / "model.safetensors.index.json").read_text())
    ours = json.loads((tmp_path / "ours" / "model.safetensors.index.json").read_text())
    assert ours["weight_map"] == hub["weight_map"]
    assert ours["metadata"]["total_size"] == hub["metadata"]["total_size"]


def tiny_llama(tie):
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def test_a_hugging_face_model_round_trips_through_a_sharded_folder(tmp_path):
    import transformers

    model = tiny_llama(tie=False)
    folder = tmp_path / "model"
    st.save_folder(model.state_dict(), folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(st.SafetensorsFolder(folder).shards) > 2

    fresh = tiny_llama(tie=False)
    torch.nn.init.zeros_(fresh.lm_head.weight)
    fresh.load_state_dict(st.load_folder(folder), strict=True)
    for (name, expected), got in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(expected, got), name

    # transformers loads our folder as its own, and we read its own.
    model.config.save_pretrained(folder)
    loaded = transformers.LlamaForCausalLM.from_pretrained(folder)
    for name, expected in model.state_dict().items():
        assert torch.equal(expected, loaded.state_dict()[name]), name
    model.save_pretrained(tmp_path / "theirs", max_shard_size="20KB")
    theirs = st.load_folder(tmp_path / "theirs")
    fresh.load_state_dict(theirs, strict=True)
    assert torch.equal(fresh.lm_head.weight, model.lm_head.weight)


def test_tied_weights_are_refused_naming_both_entries(tmp_path):
    model = tiny_llama(tie=True)
    with pytest.raises(ValueError, match="'lm_head.weight' and 'model.embed_tokens.weight' share memory|"
                                         "'model.embed_tokens.weight' and 'lm_head.weight' share memory"):
        st.save_folder(model.state_dict(), tmp_path / "tied")
    assert not (tmp_path / "tied").exists() or list((tmp_path / "tied").iterdir()) == []


def test_the_folder_writer_streams_tensor_by_tensor(tmp_path):
    source = tmp_path / "source.safetensors"
    tensors = {f"t{i}": torch.full((256,), float(i)) for i in range(6)}
    st.save_file(tensors, source)
    file = st.SafetensorsFile(source)
    writer = st.FolderWriter(tmp_path / "out", [(i.name, i.torch_dtype, i.shape) for i in file.tensors],
                             max_shard_size="2KiB", metadata={"converted": "yes"})
    assert [names for _, names in writer.shards] == [["t0", "t1"], ["t2", "t3"], ["t4", "t5"]]
    for name, _, _ in writer.order:
        writer.write(file.tensor(name))
    writer.commit()
    folder = st.SafetensorsFolder(tmp_path / "out")
    assert folder.index_metadata == {"total_size": 6 * 1024, "converted": "yes"}
    assert_bitwise(tensors, folder.load())
