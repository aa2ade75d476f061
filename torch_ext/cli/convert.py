"""Convert a checkpoint of any format into another: ``torch`` (a torch.save file), ``dcp`` (a DCP checkpoint's
folder) or ``safetensors`` (one file when DESTINATION ends in .safetensors and no --max-shard-size is given;
otherwise a folder in Hugging Face's layout, its shards at most --max-shard-size, with its index). A DCP
checkpoint saved by several ranks is consolidated: each tensor whole. Sources are read verified, and written
durably by the library's writers. The conversion streams: a few entries at a time (at most --batch-size bytes
of tensors, or one larger tensor) are read and written, so that its memory stays within about three times
that, whatever the checkpoint's size. To torch, the file is planned on the entries' dtypes and shapes, nested
as torch_ext.load nests the source, and then takes their bytes in its order; a torch.save source alone is read
whole (its tensors are views of the mapped source, and may share storages, which torch_ext.save keeps).
safetensors holds tensors only: choose them with --keys (e.g. --keys model)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Dict, List, TextIO

import torch

from torch_ext import _C
from torch_ext import safetensors as st
from torch_ext import serialization
from torch_ext.cli.checkpoints import (
    STREAM_BYTES, Checkpoint, DiskFormat, Entry, disk_bytes, open_checkpoint, select, tensor_bytes)
from torch_ext.cli.output import Progress, human_bytes, print_json

HELP = "convert a checkpoint into torch.save's format, DCP's or safetensors (sharded)"

TARGETS = ("torch", "dcp", "safetensors")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_SAFETENSORS_SUFFIX = ".safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a checkpoint file or folder of any format")
    parser.add_argument("destination", help="the file or folder to write")
    parser.add_argument("--to", choices=TARGETS,
                        help="the format to write (default: safetensors for a name ending in .safetensors, "
                        "torch for .pt, .pth or .bin)")
    parser.add_argument("--keys", nargs="+", metavar="KEY",
                        help="only these entries, by key path (a container names all below it)")
    parser.add_argument("--batch-size", metavar="SIZE", default=f"{STREAM_BYTES >> 20}MiB",
                        help="the bytes of tensors read at once (default %(default)s; a larger tensor is read "
                        "alone; a torch.save file converted to torch is read whole)")
    parser.add_argument("--max-shard-size", metavar="SIZE",
                        help=f"safetensors: write a folder of shards of at most SIZE bytes (e.g. 5GB, 2GiB; "
                        f"default {st.DEFAULT_MAX_SHARD_SIZE} for a folder)")


def target_of(args: argparse.Namespace) -> str:
    if args.to:
        return args.to
    if args.destination.endswith(_SAFETENSORS_SUFFIX):
        return "safetensors"
    if args.destination.endswith(_TORCH_SUFFIXES):
        return "torch"
    raise ValueError(f"cannot tell the format to write to '{args.destination}' from its name: "
                     f"give --to {'|'.join(TARGETS)}")


# The folder formats each target writes.
_FOLDER_FORMATS = {"dcp": DiskFormat.Dcp, "safetensors": DiskFormat.SafetensorsFolder}


def _refuse_destination(source: str, destination: str, to: str) -> None:
    """Refuses to write over the source, or into a folder holding a checkpoint of another kind.

    A writer replaces a checkpoint of its own kind; into another's folder it would leave the marks of two,
    which no reader takes for either.
    """
    if not os.path.exists(destination):
        return
    if os.path.samefile(source, destination):
        raise ValueError(f"'{destination}' is the source itself: write the conversion elsewhere")
    if os.path.isdir(destination):
        try:
            held = _C.detect_format(destination)
        except RuntimeError:  # no checkpoint's folder
            return
        if held != _FOLDER_FORMATS.get(to):
            raise ValueError(f"'{destination}' holds {_C.describe_format(held)}: writing {to} into it would leave "
                             f"a folder of two checkpoints; remove it or write elsewhere")


def _refuse_unknown_dtype(source: Checkpoint, entry: Entry) -> None:
    if entry.dtype is None:
        raise ValueError(f"'{source.path}' holds '{entry.key}' of {entry.dtype_name}, a dtype torch lacks")


def write_safetensors(source: Checkpoint, entries: List[Entry], destination: str, max_shard_size: Any,
                      batch_size: int, progress: Progress) -> None:
    for entry in entries:
        if not entry.is_tensor:
            raise ValueError(f"'{source.path}' holds '{entry.key}', which is no tensor: a safetensors file holds "
                             f"tensors only; choose them with --keys")
        _refuse_unknown_dtype(source, entry)
    spec = [(entry.key, entry.dtype, entry.shape) for entry in entries]
    # A file's own metadata is carried over; a folder's index holds sizes of its own layout.
    metadata = source.metadata if source.format == DiskFormat.Safetensors else None
    if destination.endswith(_SAFETENSORS_SUFFIX) and max_shard_size is None:
        writer: Any = st.FileWriter(destination, spec, metadata)
    else:
        writer = st.FolderWriter(destination, spec, max_shard_size=max_shard_size or st.DEFAULT_MAX_SHARD_SIZE,
                                 metadata=metadata)
    by_key = {entry.key: entry for entry in entries}
    for batch, values in source.batches([by_key[name] for name, _, _ in writer.order], limit=batch_size):
        for entry in batch:
            writer.write(values[entry.key])
        progress.update(tensor_bytes(batch))
        del values
    writer.commit()


def write_dcp(source: Checkpoint, entries: List[Entry], destination: str, batch_size: int,
              progress: Progress) -> None:
    writer = _C.DcpWriter(destination)
    for batch, values in source.batches(entries, limit=batch_size):
        for entry in batch:
            writer.write(entry.path, values[entry.key])
        progress.update(tensor_bytes(batch))
        del values
    writer.commit()


def write_torch(source: Checkpoint, entries: List[Entry], keys: Any, destination: str, batch_size: int,
                progress: Progress) -> None:
    """The entries as torch_ext.load of the source nests them, streamed into a torch.save file.

    The file is planned on placeholders (meta tensors of the entries' dtypes and shapes), then takes their
    bytes batch by batch in its order. A torch.save source is loaded whole and saved instead: its tensors are
    views of the mapped source (no memory of their own) and may share storages (tied weights), which
    torch_ext.save keeps.
    """
    if source.format == DiskFormat.TorchSave:
        serialization.save(source.read_state(keys), destination)
        progress.update(tensor_bytes(entries))
        return
    others = [entry for entry in entries if not entry.is_tensor]  # a DCP checkpoint's values: read now
    values = source.read(others) if others else {}
    leaves = []
    for entry in entries:
        if entry.is_tensor:
            _refuse_unknown_dtype(source, entry)
            leaves.append((entry.path, torch.empty(entry.shape, dtype=entry.dtype, device="meta")))
        else:
            leaves.append((entry.path, values[entry.key]))
    writer = _C.TorchSaveFileWriter(destination, leaves, list(keys or []), source.path)
    by_key = {entry.key: entry for entry in entries}
    for batch, values in source.batches([by_key[key] for key in writer.order], limit=batch_size):
        for entry in batch:
            writer.write(values[entry.key])
        progress.update(tensor_bytes(batch))
        del values
    writer.commit()


def run(args: argparse.Namespace, out: TextIO) -> int:
    to = target_of(args)
    if args.max_shard_size is not None:
        if to != "safetensors":
            raise ValueError(f"--max-shard-size is safetensors' option; {to} has none")
        if args.destination.endswith(_SAFETENSORS_SUFFIX):
            raise ValueError(f"--max-shard-size writes a folder of shards: name it without {_SAFETENSORS_SUFFIX}, "
                             f"not '{args.destination}'")
        st.parse_size(args.max_shard_size)  # refused before anything is read
    batch_size = st.parse_size(args.batch_size)
    _refuse_destination(args.source, args.destination, to)
    start = time.monotonic()
    source = open_checkpoint(args.source, "convert")
    entries = select(source.entries, args.keys, source.path)
    with Progress(f"convert {source.path}", tensor_bytes(entries)) as progress:
        if to == "safetensors":
            write_safetensors(source, entries, args.destination, args.max_shard_size, batch_size, progress)
        elif to == "dcp":
            write_dcp(source, entries, args.destination, batch_size, progress)
        else:
            write_torch(source, entries, args.keys, args.destination, batch_size, progress)
    report: Dict[str, Any] = {
        "source": source.path, "source_format": source.format.name, "destination": args.destination,
        "to": to, "entries": len(entries), "tensor_bytes": tensor_bytes(entries),
        "disk_bytes": disk_bytes(args.destination), "seconds": round(time.monotonic() - start, 3)}
    if args.json:
        print_json(report, out)
    else:
        out.write(f"{source.path} ({source.description}) -> {args.destination} ({to}): {len(entries)} entries, "
                  f"{human_bytes(report['tensor_bytes'])} of tensors, {human_bytes(report['disk_bytes'])} on disk, "
                  f"in {report['seconds']:.1f} s\n")
    return 0
