"""Where every benchmark writes its measurement: one JSON line appended to
benchmarks/results/NAME.jsonl (each line carries its machine, torch version and date)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def append_jsonl(name: str, rec: dict) -> Path:
    path = RESULTS / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"appended to {path}")
    return path
