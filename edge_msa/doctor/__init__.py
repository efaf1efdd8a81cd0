"""`edge-msa doctor`: what this device can use, and what to fix before `edge-msa run`.

Each check is a small function returning one :class:`Check`; :func:`run_checks`
runs them in order and :func:`format_line` prints one line per check.
"""

from edge_msa.doctor.report import Check, exit_code, format_line, run_checks

__all__ = ["Check", "exit_code", "format_line", "run_checks"]
