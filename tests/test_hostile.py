"""The hostile-input corpus (tests/hostile/corpus.py) gives only OK or TYPED outcomes.

The corpus runs in a subprocess, one JSON line per case; a case the process died in is a CRASH, one it
was still running when the time ran out a HANG, and the run resumes after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).parent / "hostile" / "corpus.py"
TIMEOUT = 420


def _run_corpus() -> list[dict]:
    results: list[dict] = []
    start = 0
    while True:
        env = {**os.environ, "HOSTILE_FROM": str(start)}
        proc = subprocess.Popen([sys.executable, str(CORPUS)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env)
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
            failure = None if proc.returncode == 0 else "CRASH"
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failure = "HANG"
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        done = [d for d in lines if "outcome" in d]
        results.extend(done)
        started = [d["start"] for d in lines if "start" in d]
        if failure is None or not started:
            return results
        results.append({"id": started[-1], "entry": started[-1].split(" | ")[0], "outcome": failure,
                        "detail": f"the worker {'died' if failure == 'CRASH' else 'timed out'} in this case"})
        start += len(started)


def test_hostile_inputs_give_only_results_or_typed_errors() -> None:
    results = _run_corpus()
    counts: dict[str, Counter] = {}
    for r in results:
        counts.setdefault(r["entry"], Counter())[r["outcome"]] += 1
    table = "\n".join(f"{e:30s} " + "  ".join(f"{o} {n}" for o, n in sorted(c.items()))
                      for e, c in sorted(counts.items()))
    total = Counter(r["outcome"] for r in results)
    print(f"\nhostile corpus: {len(results)} cases, {dict(total)}\n{table}")
    assert len(results) > 300
    bad = [f"{r['outcome']:10s} {r['id']}: {r['detail']}" for r in results if r["outcome"] not in ("OK", "TYPED")]
    assert not bad, f"{len(bad)} case(s) neither OK nor TYPED:\n" + "\n".join(bad)
    by_id = {r["id"]: r["outcome"] for r in results}
    for cid, outcome in by_id.items():  # inputs that must be refused, and inputs that must work
        label = cid.split(" | ")[1]
        if label.split(" ")[0] in ("nan", "inf", "string", "none", "complex", "objects"):
            assert outcome == "TYPED", cid
        if label.startswith("normal") and cid.startswith(("quantize |", "fake_quantize |", "compare |")):
            assert outcome == "OK", cid
