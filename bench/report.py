"""What every benchmark's section of docs/benchmarks.md shares: where and when it was measured,
and the rewrite of that section alone, between the benchmark's own markers.

The machine, interpreter and revision helpers are bench/ack_latency.py's; its `write_doc` is
tied to its own markers, hence `write_section` here.
"""

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

from bench.ack_latency import CLK_TCK, DOC, _cpu_model, _git_revision, _interpreter


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (every core, /proc/stat):
    the difference over a measurement, less the benchmark's own processes' CPU, is what other
    work on the machine took meanwhile."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that produced the figures, as someone would type it again."""
    return shlex.join([_interpreter(), "-m", module, *(sys.argv[1:] if argv is None else argv)])


def provenance(command: str, script: str) -> str:
    """The command, machine and date lines, in bench/ack_latency.py's wording."""
    return (
        f"- Command: `{command}` (`make bench`); written by `{script}`\n"
        f"- Machine: `nproc` {len(os.sched_getaffinity(0))}; {_cpu_model()};\n"
        f"  {platform.system()} {platform.release()}; Python {platform.python_version()}\n"
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; revision {_git_revision()}"
    )


def verdict_lines(verdicts: list[tuple[str, bool]]) -> str:
    return "\n".join(f"- {'✅ met' if ok else '❌ missed'}: {text}" for text, ok in verdicts)


def write_section(section: str, start: str, end: str, path: Path = DOC) -> None:
    """Replace the text between `start` and `end` (markers included), or append it."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = (
            "# Benchmarks\n\n"
            "Measured with `make bench` on the project's 2-CPU machine. Each benchmark\n"
            "rewrites only its own section, between its markers.\n"
        )
    section = section.strip("\n")
    if not (section.startswith(start) and section.endswith(end)):
        raise ValueError(f"a section must run from {start} to {end}")
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
