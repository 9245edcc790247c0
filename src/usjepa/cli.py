"""The `usjepa` command: one entry point, one module per subcommand.

Each module named in COMMANDS exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from usjepa.errors import UsjepaError

COMMANDS = {
    "demo": ("usjepa.demo", "simulate, pretrain, compare and benchmark end to end"),
    "simulate": ("usjepa.synthus.cli", "write the SynthUS benchmark and pretraining corpus"),
    "prepare": ("usjepa.data.prepare", "write BUS-BRA or TN5000 from their raw layout as UltraBench folders"),
    "ingest": ("usjepa.data.ingest", "preprocess real ultrasound into WebDataset shards"),
    "pretrain": ("usjepa.train", "pretrain a backbone with a registered method (listed by usjepa pretrain --help)"),
    "export": ("usjepa.export", "export a run's backbone as timm-loadable safetensors"),
    "bench": ("usjepa.bench.run", "benchmark frozen encoders on UltraBench-layout tasks"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="usjepa", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd = argparse.ArgumentParser(prog=f"usjepa {argv[0]}", description=COMMANDS[argv[0]][1])
    module.add_arguments(cmd)
    args = cmd.parse_args(argv[1:])
    try:
        return module.run(args) or 0
    except UsjepaError as e:
        print(f"usjepa {argv[0]}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
