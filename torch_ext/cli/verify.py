"""Check every checksum a checkpoint carries: every record of a torch.save file, every item of a DCP checkpoint,
the CRC32s our safetensors writer stores (files of other writers carry none: their tensors are listed as
unverifiable), every rank's file of every committed step of a CheckpointManager root. Exit status 0 when all
hold, 1 naming the first failures, 2 when the path cannot be read as a checkpoint at all."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, TextIO

from torch_ext.cli.checkpoints import Checkpoint, ManagerRoot, one_line, open_any, open_checkpoint, tensor_bytes
from torch_ext.cli.output import Progress, print_json

HELP = "check every checksum of a checkpoint or of a CheckpointManager root's committed steps"

EXIT_FAILED = 1
# The failures printed, of each checkpoint.
MAX_FAILURES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file or folder, or a CheckpointManager root")


def check(checkpoint: Checkpoint) -> Dict[str, Any]:
    with Progress(f"verify {checkpoint.path}", tensor_bytes(checkpoint.entries)) as progress:
        found = checkpoint.checksums(progress)
    return {"path": checkpoint.path, "format": checkpoint.format.name, "description": checkpoint.description,
            "ok": found.ok, "verified": len(found.verified), "unverifiable": found.unverifiable,
            "failures": found.failed[:MAX_FAILURES], "failure_count": len(found.failed)}


def failed(path: str, why: str) -> Dict[str, Any]:
    return {"path": path, "ok": False, "verified": 0, "unverifiable": [], "failures": [why], "failure_count": 1}


def check_root(root: ManagerRoot) -> Dict[str, Any]:
    steps = []
    for step in root.steps:
        if not step.committed:
            steps.append({"step": step.step, "committed": False, "files": []})
            continue
        files: List[Dict[str, Any]] = []
        if step.world_size is None:
            files.append(failed(step.path, f"the commit file of step {step.step} in '{step.path}' names no ranks"))
        for path in step.rank_files:
            try:
                files.append(check(open_checkpoint(path, "verify")))
            except Exception as error:
                files.append(failed(path, one_line(error)))
        steps.append({"step": step.step, "committed": True, "files": files})
    ok = all(file["ok"] for step in steps for file in step["files"])
    return {"path": root.path, "format": root.format.name, "description": root.description, "ok": ok, "steps": steps}


def run(args: argparse.Namespace, out: TextIO) -> int:
    opened = open_any(args.path)
    report = check_root(opened) if isinstance(opened, ManagerRoot) else check(opened)
    if args.json:
        print_json(report, out)
    elif isinstance(opened, ManagerRoot):
        out.write(f"{report['path']}: {report['description']}\n")
        for step in report["steps"]:
            if not step["committed"]:
                out.write(f"step {step['step']}: not committed, not checked\n")
            for file in step["files"]:
                out.write(f"step {step['step']}: ")
                print_file(file, out)
    else:
        print_file(report, out)
    return 0 if report["ok"] else EXIT_FAILED


def print_file(report: Dict[str, Any], out: TextIO) -> None:
    if report["ok"]:
        out.write(f"ok: {report['path']}: {report['verified']} entries verified")
    else:
        out.write(f"FAILED: {report['path']}: {report['failure_count']} of its entries fail")
    unverifiable = report["unverifiable"]
    if unverifiable:
        out.write(f"; {len(unverifiable)} tensors carry no checksum, so nothing checked them "
                  f"({', '.join(unverifiable[:5])}{', ...' if len(unverifiable) > 5 else ''})")
    out.write("\n")
    for failure in report["failures"]:
        out.write(f"  {failure}\n")
    if report["failure_count"] > len(report["failures"]):
        out.write(f"  ... and {report['failure_count'] - len(report['failures'])} more\n")
