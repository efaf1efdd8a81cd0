"""`edge-msa doctor`: check cameras, audio, broker, backends, models and disk."""

from __future__ import annotations

import argparse
import json

from edge_msa.cli.common import add_common, overrides, setup_logging, use_models
from edge_msa.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="check cameras, audio, broker, backends, models and disk; say what to fix"
    )
    add_common(doctor)
    doctor.add_argument("--camera", dest="source.camera", help="also require this camera")
    doctor.add_argument("--microphone", dest="source.microphone", help="also require this input")
    doctor.add_argument(
        "--output",
        dest="output.sinks",
        action="append",
        choices=["mqtt", "jsonl"],
        help="the sinks the run will use (the broker is needed only with mqtt)",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object on stdout")
    doctor.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from edge_msa.doctor import exit_code, format_line, run_checks

    cfg = load_config(args.config, overrides(args))
    setup_logging(cfg.runtime.log_level)
    use_models(args)
    checks = run_checks(cfg)
    code = exit_code(checks)
    if args.json:
        print(json.dumps({"ok": code == 0, "checks": [c.to_dict() for c in checks]}))
    else:
        print("\n".join(format_line(c) for c in checks))
    return code
