"""Compare two checkpoints of any formats entry by entry (by flattened key, so that a torch.save file and its
safetensors or DCP conversion compare): keys only in one, dtype or shape differences, and for tensors of the
same dtype and shape the largest absolute difference (bit-level differences, such as -0.0 and 0.0 or NaN
payloads, count too); other values compared for equality. Tensors are read a few at a time, as convert reads
them. Exit status 0 when both hold the same, 1 when they differ, 2 on an error."""

from __future__ import annotations

import argparse
import math
from typing import Any, Dict, List, Optional, TextIO, Tuple

import torch

from torch_ext.cli.checkpoints import Checkpoint, Entry, open_checkpoint, tensor_bytes
from torch_ext.cli.output import Progress, print_json

HELP = "compare two checkpoints: keys only in one, dtype or shape differences, largest difference per tensor"

EXIT_DIFFERENT = 1
# Elements compared at once: what the comparison allocates beside the tensors read.
_CHUNK = 1 << 22


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="a checkpoint file or folder of any format")
    parser.add_argument("b", help="another")


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)


def difference(a: torch.Tensor, b: torch.Tensor) -> Tuple[bool, Optional[float]]:
    """(bitwise equal, the largest |a - b|) of tensors of one dtype and shape; None where torch cannot subtract it.

    NaN where one holds NaN and the other not; equal values (NaN and NaN included) differ by 0.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    same_bits = True
    largest: Optional[float] = 0.0
    wide = torch.complex128 if a.dtype.is_complex else torch.float64
    for start in range(0, a.numel(), _CHUNK):
        x, y = a[start:start + _CHUNK].contiguous(), b[start:start + _CHUNK].contiguous()
        if torch.equal(_bytes(x), _bytes(y)):
            continue
        same_bits = False
        if largest is None:
            continue
        try:
            x, y = x.to(wide), y.to(wide)
        except (RuntimeError, TypeError):  # float4_e2m1fn_x2, say
            largest = None
            continue
        gap = torch.where((x == y) | (torch.isnan(x) & torch.isnan(y)), 0.0, (x - y).abs()).max().item()
        largest = gap if math.isnan(gap) or math.isnan(largest) else max(largest, gap)
    return same_bits, largest


def _description(entry: Entry) -> str:
    if not entry.is_tensor:
        return "a value"
    return f"{entry.dtype_name} [{', '.join(map(str, entry.shape))}]"


def compare(a: Checkpoint, b: Checkpoint) -> Dict[str, Any]:
    b_entries = {entry.key: entry for entry in b.entries}
    a_keys = {entry.key for entry in a.entries}
    report: Dict[str, Any] = {
        "a": a.path, "b": b.path,
        "only_in_a": [entry.key for entry in a.entries if entry.key not in b_entries],
        "only_in_b": [entry.key for entry in b.entries if entry.key not in a_keys],
        "mismatched": [], "different": [], "identical": 0,
    }
    tensors: List[Tuple[Entry, Entry]] = []
    values: List[Tuple[Entry, Entry]] = []
    for entry in a.entries:
        other = b_entries.get(entry.key)
        if other is None:
            continue
        if entry.is_tensor != other.is_tensor or (entry.is_tensor and (
                entry.dtype_name != other.dtype_name or entry.shape != other.shape)):
            report["mismatched"].append({"key": entry.key, "a": _description(entry), "b": _description(other)})
        elif entry.is_tensor:
            tensors.append((entry, other))
        else:
            values.append((entry, other))

    if values:
        read_a = a.read([x for x, _ in values])
        read_b = b.read([y for _, y in values])
        for entry, _ in values:
            if read_a[entry.key] == read_b[entry.key]:
                report["identical"] += 1
            else:
                report["different"].append({"key": entry.key, "a": repr(read_a[entry.key]),
                                            "b": repr(read_b[entry.key])})

    pairs = {x.key: y for x, y in tensors}
    with Progress(f"diff {a.path} {b.path}", tensor_bytes([x for x, _ in tensors])) as progress:
        for batch, read_a in a.batches([x for x, _ in tensors]):
            read_b = b.read([pairs[entry.key] for entry in batch])
            for entry in batch:
                same_bits, largest = difference(read_a[entry.key], read_b[entry.key])
                if same_bits:
                    report["identical"] += 1
                else:
                    report["different"].append({"key": entry.key, "max_abs_diff": largest})
            progress.update(tensor_bytes(batch))
            del read_a, read_b
    report["same"] = not (report["only_in_a"] or report["only_in_b"] or report["mismatched"] or report["different"])
    return report


def run(args: argparse.Namespace, out: TextIO) -> int:
    report = compare(open_checkpoint(args.a, "diff"), open_checkpoint(args.b, "diff"))
    if args.json:
        print_json(report, out)
    else:
        for key in report["only_in_a"]:
            out.write(f"only in A: {key}\n")
        for key in report["only_in_b"]:
            out.write(f"only in B: {key}\n")
        for item in report["mismatched"]:
            out.write(f"differs in kind: {item['key']}: A {item['a']}, B {item['b']}\n")
        for item in report["different"]:
            if "max_abs_diff" in item:
                gap = item["max_abs_diff"]
                text = "in bits only" if gap == 0 else "max |A - B| " + ("unknown" if gap is None else f"{gap:.6g}")
                out.write(f"differs: {item['key']}: {text}\n")
            else:
                out.write(f"differs: {item['key']}: A {item['a']}, B {item['b']}\n")
        compared = report["identical"] + len(report["different"])
        out.write(f"A {report['a']}, B {report['b']}: {compared} entries compared, {report['identical']} identical"
                  f"{'' if report['same'] else ': they differ'}\n")
    return 0 if report["same"] else EXIT_DIFFERENT
