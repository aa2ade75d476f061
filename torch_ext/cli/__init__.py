"""The ``torch_ext`` command line: ``info``, ``verify``, ``convert`` and ``diff`` of any checkpoint.

Run as ``torch_ext <command>`` (the console script) or ``python -m torch_ext
<command>``. Every command reads through the library's readers and writes
through its writers. Exit status 0 on success, 1 when ``verify`` finds a
checksum that fails or ``diff`` a difference, 2 on an error (one line naming
the file; ``--debug`` prints the traceback too).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import List, Optional

from torch_ext.cli import convert, diff, info, verify
from torch_ext.cli.checkpoints import one_line

__all__ = ["main"]

COMMANDS = {"info": info, "verify": verify, "convert": convert, "diff": diff}
EXIT_ERROR = 2


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document, for scripts")
    common.add_argument("--debug", action="store_true", help="print the traceback of an error")
    top = argparse.ArgumentParser(
        prog="torch_ext", description="Inspect, verify, convert and compare checkpoints: torch.save files, "
        "DCP checkpoints, safetensors files and Hugging Face folders, CheckpointManager roots.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = commands.add_parser(name, parents=[common], help=module.HELP, description=module.__doc__)
        module.add_arguments(command)
    return top


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args, sys.stdout)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        message = one_line(error)
        paths = [path for path in (getattr(args, name, None) for name in ("path", "source", "a")) if path]
        if paths and not any(path in message for path in paths):
            message = f"'{paths[0]}': {message}"
        print(f"torch_ext {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
