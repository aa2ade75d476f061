"""Show what a checkpoint holds: its format, its entries as a tree with dtype, shape and bytes, the totals and
its metadata; for a CheckpointManager root, its steps (committed or not), their sizes and times. Reads no
tensor data."""

from __future__ import annotations

import argparse
import datetime
from typing import Any, Dict, List, TextIO, Tuple

from torch_ext.cli.checkpoints import Checkpoint, DiskFormat, ManagerRoot, disk_bytes, open_any
from torch_ext.cli.output import human_bytes, human_time, print_json

HELP = "show a checkpoint's format, entries, totals and metadata, or a CheckpointManager root's steps"

# The widest a value is shown in the tree.
_VALUE_WIDTH = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file or folder, or a CheckpointManager root")


def run(args: argparse.Namespace, out: TextIO) -> int:
    opened = open_any(args.path)
    if isinstance(opened, ManagerRoot):
        report = root_report(opened)
        print_json(report, out) if args.json else print_root(report, out)
    else:
        report = checkpoint_report(opened)
        print_json(report, out) if args.json else print_checkpoint(report, out)
    return 0


def _value_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_WIDTH else text[:_VALUE_WIDTH - 3] + "..."


def checkpoint_report(checkpoint: Checkpoint) -> Dict[str, Any]:
    values = [entry for entry in checkpoint.entries if not entry.is_tensor and entry.value is None]
    # Values that listing did not read (DCP's items): small, read unverified for the show.
    read = checkpoint.read(values, verify=False) if values else {}
    entries = []
    for entry in checkpoint.entries:
        if entry.is_tensor:
            item = {"key": entry.key, "path": list(entry.path), "kind": "tensor", "dtype": entry.dtype_name,
                    "shape": list(entry.shape), "bytes": entry.nbytes}
            if checkpoint.format == DiskFormat.Dcp:
                item["chunks"] = entry.chunks
        else:
            value = read.get(entry.key, entry.value)
            item = {"key": entry.key, "path": list(entry.path), "kind": "value", "type": type(value).__name__,
                    "value": _value_text(value)}
        entries.append(item)
    tensors = [entry for entry in checkpoint.entries if entry.is_tensor]
    return {
        "path": checkpoint.path,
        "format": checkpoint.format.name,
        "description": checkpoint.description,
        "entries": entries,
        "totals": {"tensors": len(tensors), "values": len(checkpoint.entries) - len(tensors),
                   "tensor_bytes": sum(entry.nbytes for entry in tensors), "disk_bytes": disk_bytes(checkpoint.path)},
        "metadata": checkpoint.metadata,
    }


def _display_path(item: Dict[str, Any]) -> Tuple[str, ...]:
    # By the dots of its key, whatever the format: safetensors' names are flat.
    return tuple(item["key"].split(".")) if item["key"] else ("(root)",)


def _tree(report: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(label, details) lines: containers with their tensors' count and bytes, then leaves."""
    root: Dict[str, Any] = {}
    for item in report["entries"]:
        node = root
        for step in _display_path(item):
            node = node.setdefault(step, {})
        node[None] = item

    def totals(node: Dict[Any, Any]) -> Tuple[int, int, int]:
        """Tensors, their bytes, other values: of everything below `node`."""
        count, size, values = 0, 0, 0
        for key, child in node.items():
            if key is None:
                if child["kind"] == "tensor":
                    count, size = count + 1, size + child["bytes"]
                else:
                    values += 1
            else:
                child_count, child_size, child_values = totals(child)
                count, size, values = count + child_count, size + child_size, values + child_values
        return count, size, values

    lines: List[Tuple[str, str]] = []

    def walk(node: Dict[Any, Any], depth: int) -> None:
        for key, child in node.items():
            if key is None:
                continue
            label = "  " * depth + key
            item = child.get(None)
            if item is not None and item["kind"] == "tensor":
                shape = "[" + ", ".join(map(str, item["shape"])) + "]"
                chunks = f"  {item['chunks']} chunks" if item.get("chunks", 1) > 1 else ""
                lines.append((label, f"{item['dtype']:<14} {shape:<20} {human_bytes(item['bytes'])}{chunks}"))
            elif item is not None:
                lines.append((label, f"{item['type']:<14} {item['value']}"))
            if len(child) > (item is not None):
                count, size, values = totals({key: value for key, value in child.items() if key is not None})
                parts = ([f"{count} tensors, {human_bytes(size)}"] if count else []) + \
                    ([f"{values} values"] if values else [])
                lines.append((label if item is None else label + " (below)", ", ".join(parts)))
                walk(child, depth + 1)

    walk(root, 0)
    return lines


def print_checkpoint(report: Dict[str, Any], out: TextIO) -> None:
    totals = report["totals"]
    out.write(f"{report['path']}: {report['description']}, {human_bytes(totals['disk_bytes'])} on disk\n")
    out.write(f"{totals['tensors']} tensors, {human_bytes(totals['tensor_bytes'])}; {totals['values']} other values\n")
    if report["metadata"]:
        out.write("metadata:\n")
        for key, value in report["metadata"].items():
            out.write(f"  {key}: {value}\n")
    lines = _tree(report)
    width = min(60, max((len(label) for label, _ in lines), default=0))
    for label, details in lines:
        out.write(f"{label:<{width}}  {details}\n")


def root_report(root: ManagerRoot) -> Dict[str, Any]:
    steps = [{"step": step.step, "committed": step.committed, "world_size": step.world_size,
              "files": step.rank_files, "bytes": step.bytes,
              "time": datetime.datetime.fromtimestamp(step.time).astimezone().isoformat()}
             for step in root.steps]
    committed = [step.step for step in root.steps if step.committed]
    return {"path": root.path, "format": root.format.name, "description": root.description, "steps": steps,
            "latest_committed": committed[-1] if committed else None}


def print_root(report: Dict[str, Any], out: TextIO) -> None:
    out.write(f"{report['path']}: {report['description']}\n")
    out.write(f"{'step':>10}  {'committed':<9}  {'ranks':>5}  {'size':>10}  time\n")
    for step in report["steps"]:
        ranks = "-" if step["world_size"] is None else str(step["world_size"])
        when = human_time(datetime.datetime.fromisoformat(step["time"]).timestamp())
        out.write(f"{step['step']:>10}  {'yes' if step['committed'] else 'no':<9}  {ranks:>5}  "
                  f"{human_bytes(step['bytes']):>10}  {when}\n")
    latest = report["latest_committed"]
    out.write(f"latest committed step: {'none' if latest is None else latest}\n")

