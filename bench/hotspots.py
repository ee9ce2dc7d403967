"""Summarises bench/hotspots' profiles as Markdown: the engine's Go CPU profiles (``go tool pprof -top -cum``
text) and py-spy's raw samples of the program, each as a table of named parts (inclusive time; parts may
overlap, e.g. the byte-string check is part of serializing the state)."""

from __future__ import annotations

import argparse
import datetime
import os
import re
from pathlib import Path

#: Engine parts: label -> function names whose cumulative time is summed (pprof's inclusive "cum").
ENGINE_PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("saving checkpoints (`SnapshotManager.saveSnapshot`)", ("backend.(*SnapshotManager).saveSnapshot",)),
    ("· the state to its serialized form (`SnapshotManager.Deployment`)", ("backend.(*SnapshotManager).Deployment",)),
    ("· · of which: does any value need byte strings?", ("stack.propertyMapNeedsByteString",)),
    ("· JSON-encoding it (twice per save)", ("diy.compactJSONMarshaler.Marshal",)),
    ("· MD5 of the file written", ("crypto/md5.(*digest).Write",)),
    ("reading the state (`DeserializeCheckpoint`)", ("stack.DeserializeCheckpoint",)),
    ("the program's registrations (`resmon.RegisterResource`)", ("deploy.(*resmon).RegisterResource",)),
    ("· transform callbacks to the program", ("deploy.(*resmon).wrapTransformCallback.func1",)),
    ("steps (`stepExecutor.executeStep`: check, diff, provider calls)", ("deploy.(*stepExecutor).executeStep",)),
    ("engine events for the display (`engine.NewEvent`)", ("engine.NewEvent",)),
    ("garbage collector (`runtime.gcBgMarkWorker`)", ("runtime.gcBgMarkWorker",)),
]

#: Program parts: label -> a frame prefix (py-spy's "function (file:line)"); inclusive samples.
PROGRAM_PARTS: list[tuple[str, str]] = [
    ("answering transform callbacks", "_CallbackServicer.Invoke (pulumi/runtime/_callbacks.py"),
    (
        "rebuilding resources the charts return (`getResource`)",
        "get_resource.<locals>.do_get (pulumi/runtime/resource.py",
    ),
    ("sending debug log lines to the engine", "debug (pulumi/log.py"),
    ("importing modules", "_find_and_load (<frozen importlib._bootstrap>"),
    ("serializing properties for the engine", "serialize_properties (pulumi/runtime/rpc.py"),
    ("deserializing properties from the engine", "deserialize_properties (pulumi/runtime/rpc.py"),
    ("preflight (API servers, kubeconfigs)", "preflight_problems"),
    ("this project's component constructors", "__init__ (components/"),
]

_DURATION = re.compile(r"([\d.]+)(ms|s|min|h)")
_GENERIC = re.compile(r"\[[^\]]*\]")


def function_name(text: str) -> str:
    """pprof's function name without ``(inline)`` and generic type arguments."""
    return _GENERIC.sub("", text.removesuffix(" (inline)")).strip()


def seconds(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a pprof duration: {text!r}")
    value, unit = float(match[1]), match[2]
    return value * {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]


def parse_pprof(text: str) -> tuple[float, dict[str, float]]:
    """Total sampled CPU seconds and each function's cumulative seconds from ``pprof -top -cum`` text."""
    total = 0.0
    cum: dict[str, float] = {}
    for line in text.splitlines():
        if "Total samples =" in line:
            total = seconds(line.split("Total samples =")[1].split()[0])
            continue
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[1].endswith("%") and fields[4].endswith("%"):
            try:
                name = function_name(fields[5])
                cum[name] = cum.get(name, 0.0) + seconds(fields[3])
            except ValueError:
                continue
    if not total:
        raise SystemExit("bench/hotspots.py: no 'Total samples' in the pprof output")
    return total, cum


def engine_table(text: str) -> list[str]:
    total, cum = parse_pprof(text)
    rows = [f"| all sampled engine CPU | {total:.1f} | 100% |"]
    for label, names in ENGINE_PARTS:
        value = sum(v for name, v in cum.items() if any(name.endswith(n) for n in names))
        rows.append(f"| {label} | {value:.1f} | {value / total:.0%} |")
    return ["| engine part | CPU s | share |", "|---|---:|---:|", *rows]


def program_table(raw: str, rate: int) -> list[str]:
    stacks: list[tuple[list[str], int]] = []
    for line in raw.splitlines():
        frames, _, count = line.rstrip().rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    total = sum(n for _, n in stacks)
    if not total:
        raise SystemExit("bench/hotspots.py: py-spy recorded no samples of the program")
    rows = [f"| all sampled program CPU | {total / rate:.1f} | 100% |"]
    for label, prefix in PROGRAM_PARTS:
        hits = sum(n for frames, n in stacks if any(prefix in frame for frame in frames))
        rows.append(f"| {label} | {hits / rate:.1f} | {hits / total:.0%} |")
    return ["| program part (no-op preview) | CPU s | share |", "|---|---:|---:|", *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--walls", type=Path, required=True)
    parser.add_argument("--engine-up", type=Path, required=True)
    parser.add_argument("--engine-preview", type=Path, required=True)
    parser.add_argument("--program-preview", type=Path, required=True)
    parser.add_argument("--rate", type=int, default=50, help="py-spy's samples per second")
    a = parser.parse_args()
    walls = dict(line.split() for line in a.walls.read_text().splitlines() if line.strip())
    lines = [
        "# Hotspots: the engine's and the program's CPU by part (bench/hotspots)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} cores, one fresh 2-cluster lab: "
        f"`pulumi up` from empty ({float(walls['up']):.1f} s wall) and a no-op `pulumi preview` "
        f"({float(walls['preview']):.1f} s wall, with py-spy attached). Inclusive CPU seconds sampled; parts "
        "overlap where one calls another (the dots).",
        "",
        "`pulumi up` from empty, engine:",
        "",
        *engine_table(a.engine_up.read_text()),
        "",
        "No-op `pulumi preview`, engine:",
        "",
        *engine_table(a.engine_preview.read_text()),
        "",
        "No-op `pulumi preview`, program (py-spy):",
        "",
        *program_table(a.program_preview.read_text(), a.rate),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
