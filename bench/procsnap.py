"""CPU of the machine's processes by command name, between two snapshots (used by ``bench/scaling``).

``procsnap.py snap FILE`` writes every process's user+system time, its reaped children's included,
by pid and command name; ``procsnap.py diff A B`` prints, per command name, the CPU seconds spent
between A and B (processes that started after A count from zero; one that exited and was reaped
counts in its parent's children time, so under the parent's name). Linux ``/proc`` only.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


Snapshot = dict[str, tuple[str, int]]


def snapshot() -> Snapshot:
    """pid -> [command name, CPU ticks (utime + stime + cutime + cstime)]."""
    out: Snapshot = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone between the listing and the read
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # fields[0] is the state (field 3 of proc(5)); utime..cstime are fields 14-17.
        out[stat.parent.name] = (name, sum(int(f) for f in fields[11:15]))
    return out


def diff(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Command name -> CPU seconds between the snapshots. A pid seen in both counts its growth (a
    kernel worker renames itself as it works); one whose time went down was reused and counts from 0."""
    spent: dict[str, float] = defaultdict(float)
    for pid, (name, now) in after.items():
        old = before.get(pid)
        base = old[1] if old and old[1] <= now else 0
        spent[name] += (now - base) / HZ
    return dict(spent)


def load(path: str) -> Snapshot:
    return {pid: (str(name), int(ticks)) for pid, (name, ticks) in json.loads(Path(path).read_text()).items()}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "snap":
        Path(argv[1]).write_text(json.dumps(snapshot()))
        return 0
    if len(argv) == 3 and argv[0] == "diff":
        spent = diff(load(argv[1]), load(argv[2]))
        for name, secs in sorted(spent.items(), key=lambda kv: -kv[1]):
            if secs >= 0.05:
                print(f"{name}\t{secs:.1f}")
        return 0
    print("usage: procsnap.py snap FILE | diff BEFORE AFTER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
