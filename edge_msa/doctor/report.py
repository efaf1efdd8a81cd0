"""The doctor's verdicts: one typed line per check, and the exit code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from edge_msa.config import Config

log = logging.getLogger(__name__)

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    """``FAIL`` only for a part the configured run needs; ``warn`` for the rest."""

    level: Level
    name: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def format_line(check: Check) -> str:
    fix = f"; fix: {check.fix}" if check.fix else ""
    return f"{check.level:<4}  {check.name}: {check.detail}{fix}"


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.level == "FAIL" for c in checks) else 0


def run_checks(cfg: Config) -> list[Check]:
    """Every check, in the order a person would fix things."""
    from edge_msa.doctor import backends, broker, devices, models, storage

    groups: list[Callable[[Config], list[Check]]] = [
        models.check_models,
        backends.check_backends,
        broker.check_broker,
        storage.check_state_dir,
        devices.check_cameras,
        devices.check_audio,
    ]
    checks: list[Check] = []
    for group in groups:
        try:
            checks.extend(group(cfg))
        except Exception as e:  # a check that crashes is itself a finding, not a traceback
            log.debug("doctor check crashed", exc_info=True)
            name = group.__name__.removeprefix("check_").replace("_", " ")
            checks.append(
                Check(
                    "warn",
                    name,
                    f"the check itself failed: {type(e).__name__}: {e}",
                    "report this as a bug with the output of --log-level DEBUG",
                )
            )
    return checks
