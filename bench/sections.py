"""The measurements. Each returns rows: (metric, value, target or "")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import corpus, run
from bench.executors import executors as _executors
from bench.growth import growth
from bench.llm import llm_stage
from bench.resync import resync, resync_60k
from bench.run import ROOT, add, fresh_kb, median
from bench.synthetic import commit_size
from bench.watch_latency import watch_latency

SHARED = ROOT.parent / "shared" / "corpus"
CORES = os.cpu_count() or 1
Row = tuple[str, str, str]


def _floor_s(inputs: list[Path]) -> float:
    out = subprocess.run([sys.executable, "-m", "bench.floor", *map(str, inputs)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(run.SOURCE)}, cwd=run.SOURCE)
    return float(out.stdout.strip())


def speedup(out: Path, runs: int, quick: bool) -> list[Row]:
    """jobs=1 against jobs=2 on the real corpora, and wall against the floor."""
    pdfs, rfcs = SHARED / "pdf-sample-files", SHARED / "md-rfcs"
    if not pdfs.is_dir() or not rfcs.is_dir():
        return [("shared corpora", f"absent at {SHARED}: skipped", "")]
    sets = {"PDF samples": [pdfs], "PDF samples + RFCs": [pdfs, rfcs]}
    rows: list[Row] = []
    for label, inputs in sets.items():
        walls: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(1 if quick else runs):
            for jobs in (1, 2):
                kb = fresh_kb(out / f"kb-speedup-{jobs}")
                walls[jobs].append(add(kb, inputs, jobs=jobs).wall_s)
        listed = run.openkb("--kb", str(out / "kb-speedup-2"), "list", "--json")
        committed = len(json.loads(listed.stdout)) if listed.returncode == 0 else "?"
        one, two = median(walls[1]), median(walls[2])
        floor = _floor_s(inputs) / CORES
        rows += [
            (f"{label}: documents committed", f"{committed}", ""),
            (f"{label}: wall, --jobs 1", f"{one:.2f} s", ""),
            (f"{label}: wall, --jobs 2", f"{two:.2f} s", ""),
            (f"{label}: speedup jobs 2 / jobs 1", f"{one / two:.2f}x", ">= 1.7x"),
            (f"{label}: conversion floor (CPU / {CORES} cores)", f"{floor:.2f} s", ""),
            (f"{label}: wall jobs 2 / floor", f"{two / floor:.2f}", "<= 1.25"),
        ]
    return rows


def _commit_ms_per_doc(out: Path, kb: Path, batch: Path) -> float:
    result = add(kb, [batch], jobs=2, jsonl=out / "commit.jsonl")
    return result.phase_ms("commit") / max(result.committed, 1)


def scale(out: Path, runs: int, quick: bool) -> list[Row]:
    """Commit cost per document with 100 vs N documents in the KB; the big add."""
    big = 1_000 if quick else 10_000
    gen = corpus.generate(out / "gen", big + 2 * 200 + 100)
    files = range(big), range(big, big + 100), range(big + 100, big + 300)
    base_big = corpus.subset(gen, files[0], out / f"set-{big}")
    base_small = corpus.subset(gen, files[1], out / "set-100")
    batch = corpus.subset(gen, files[2], out / "set-batch")
    kb_big = fresh_kb(out / "kb-big")
    result = add(kb_big, [base_big], jobs=2, jsonl=out / "big.jsonl")
    terminal = result.terminal or {}
    rows: list[Row] = [
        (f"add of {big:,} generated docs: wall", f"{result.wall_s:.1f} s", ""),
        (f"add of {big:,} generated docs: rate", f"{result.committed / result.wall_s:.0f} docs/s",
         ""),
        (f"add of {big:,} generated docs: peak RSS, all processes",
         f"{result.peak_rss_mib:.0f} MiB", "flat"),
        (f"add of {big:,} generated docs: peak RSS main / worker",
         f"{terminal.get('max_rss_mib', 0):.0f} / {terminal.get('max_worker_rss_mib', 0):.0f} "
         "MiB", ""),
    ]
    small_costs, big_costs = [], []
    for _ in range(1 if quick else runs):
        kb_small = fresh_kb(out / "kb-small")
        add(kb_small, [base_small], jobs=2)
        small_costs.append(_commit_ms_per_doc(out, kb_small, batch))
        subprocess.run(["cp", "-a", str(kb_big), str(out / "kb-big-copy")], check=True)
        big_costs.append(_commit_ms_per_doc(out, out / "kb-big-copy", batch))
        subprocess.run(["rm", "-rf", str(out / "kb-big-copy")], check=True)
    small, large = median(small_costs), median(big_costs)
    rows += [
        ("commit cost per doc, KB of 100", f"{small:.2f} ms", ""),
        (f"commit cost per doc, KB of {big:,}", f"{large:.2f} ms", ""),
        (f"commit cost ratio {big:,} / 100", f"{large / small:.2f}", "<= 1.5"),
    ]
    return rows


def jsonl_overhead(out: Path, runs: int, quick: bool) -> list[Row]:
    """Wall time is at the mercy of a shared machine, and system time at the
    mercy of its disk (every commit fsyncs); user CPU, summed over the
    processes, is the steady measure of what writing the events costs. One
    job: worker scheduling on two shared cores adds more noise than the
    events cost, and the events are the same in-process."""
    count = 100 if quick else 300
    gen = corpus.generate(out / f"gen-{count}", count, seed=7)
    results: dict[bool, list] = {False: [], True: []}
    for _ in range(1 if quick else max(runs, 9)):
        for on in (False, True):
            kb = fresh_kb(out / "kb-jsonl")
            results[on].append(add(kb, [gen], jobs=1, jsonl=out / "j.jsonl" if on else None))

    def overhead(measure: str) -> str:
        off = median([getattr(r, measure) for r in results[False]])
        on = median([getattr(r, measure) for r in results[True]])
        return f"{off:.2f} s -> {on:.2f} s ({(on / off - 1) * 100:+.1f} %)"

    events = len(results[True][0].events)
    replay_s = _replay_cpu(results[True][0].events, out / "replay.jsonl")
    share = 100 * replay_s / median([r.user_s for r in results[False]]) if replay_s else 0.0
    return [(f"{count} docs, JSONL off -> on: events", f"{events}", ""),
            (f"{count} docs, JSONL off -> on: wall", overhead("wall_s"), ""),
            ("  user + system CPU", overhead("cpu_s"), ""),
            ("  user CPU (the events' own cost)", overhead("user_s"), "< 3 %"),
            ("  the run's events replayed through the writer: CPU, share of the "
             "run's user CPU", f"{replay_s * 1000:.0f} ms = {share:.1f} %" if replay_s
             else "- (a tree without this writer API)", "< 3 %")]


def _replay_cpu(events: list[dict], path: Path, repeat: int = 20) -> float | None:
    """CPU seconds that emitting and writing one run's events costs, measured
    by replaying them through Progress and JsonlWriter of the tree under
    test (a process of its own): not at the mercy of a shared machine, as
    the A/B difference above is."""
    recorded = path.with_suffix(".events.json")
    recorded.write_text(json.dumps(events))
    proc = subprocess.run([sys.executable, "-c", _REPLAY, str(recorded), str(path), str(repeat)],
                          capture_output=True, text=True, cwd=run.SOURCE,
                          env={**os.environ, "PYTHONPATH": str(run.SOURCE)})
    recorded.unlink()
    path.unlink(missing_ok=True)
    return float(proc.stdout) if proc.returncode == 0 else None


_REPLAY = """
import json, sys, time
from openkb.progress import Progress
from openkb.progress_jsonl import JsonlWriter
events, out, repeat = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
stamped = {"event", "kind", "phase", "schema", "run_id", "seq", "ts_ms", "t_ms", "pid",
           "worker", "rss_mib"}
progress = Progress()
writer = JsonlWriter(out, warn=print)
progress.subscribe(writer)
start = time.process_time()
for _ in range(repeat):
    for event in events:
        if event.get("worker") is not None:  # a worker's, forwarded
            progress.forward({k: v for k, v in event.items() if k != "seq"})
        else:
            progress.emit(event["event"], event["kind"], event["phase"],
                          **{k: v for k, v in event.items() if k not in stamped})
print((time.process_time() - start) / repeat)
"""


def group_commit(out: Path, runs: int, quick: bool) -> list[Row]:
    count = 300 if quick else 2_000
    gen = corpus.subset(corpus.generate(out / "gen", count), range(count),
                        out / f"set-group-{count}")
    rows: list[Row] = []
    for size in (1, 4, 16, 64):
        walls, per_doc = [], []
        for _ in range(1 if quick else runs):
            kb = fresh_kb(out / "kb-group", f"commit_group_size: {size}\n")
            result = add(kb, [gen], jobs=2, jsonl=out / "group.jsonl")
            walls.append(result.wall_s)
            per_doc.append(result.phase_ms("commit") / max(result.committed, 1))
        rows.append((f"{count:,} docs, commit_group_size {size}",
                     f"{median(walls):.2f} s wall, {median(per_doc):.2f} ms commit/doc", ""))
    return rows


STEPS = ("journal", "snapshot", "publish", "index", "compile", "registry_write",
         "mark_committed")


def commit_steps(out: Path, runs: int, quick: bool) -> list[Row]:
    """Each commit step's own cost: one document per commit (group size 1),
    into a KB that already holds documents, median over the commits."""
    count = 100 if quick else 300
    gen = corpus.generate(out / f"gen-steps-{count}", 2 * count, seed=11)
    base = corpus.subset(gen, range(count), out / f"set-steps-base-{count}")
    batch = corpus.subset(gen, range(count, 2 * count), out / f"set-steps-batch-{count}")
    per_step: dict[str, list[float]] = {step: [] for step in (*STEPS, "commit")}
    for _ in range(1 if quick else runs):
        kb = fresh_kb(out / "kb-steps", "commit_group_size: 1\n")
        add(kb, [base], jobs=1)
        result = add(kb, [batch], jobs=1, jsonl=out / "steps.jsonl")
        for step, durations in per_step.items():
            durations += [e["dur_ms"] for e in result.events
                          if e.get("event") == step and e.get("kind") == "done"]
    return [(f"commit step {step}: median per one-document commit",
             f"{median(durations):.2f} ms" if durations else "-", "")
            for step, durations in per_step.items()]


def pdf_engines(out: Path, runs: int, quick: bool) -> list[Row]:
    """PDFium and pypdf on the shared PDF samples: CPU time, and where their
    text differs (word overlap per file; the lowest are listed)."""
    pdfs = SHARED / "pdf-sample-files"
    if not pdfs.is_dir():
        return [("shared PDF samples", f"absent at {pdfs}: skipped", "")]
    result = subprocess.run([sys.executable, "-m", "bench.pdf_engines", str(pdfs)],
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(run.SOURCE)}, cwd=run.SOURCE)
    if result.returncode:
        return [("PDF engines", "not in this source tree", "")]
    files = json.loads(result.stdout)
    total = {engine: sum(r[f"{engine}_s"] for r in files.values()) for engine in ("pdfium",
                                                                                   "pypdf")}
    overlaps = sorted((r["overlap"], name) for name, r in files.items() if "overlap" in r)
    rows: list[Row] = [
        ("PDF samples: text extraction CPU, pdfium / pypdf",
         f"{total['pdfium']:.2f} s / {total['pypdf']:.2f} s "
         f"({total['pypdf'] / max(total['pdfium'], 1e-9):.1f}x)", ""),
        ("PDF samples: median word overlap pdfium vs pypdf",
         f"{median([o for o, _ in overlaps]):.3f} over {len(overlaps)} files", ""),
    ]
    rows += [(f"  lowest overlap: {name}", f"{overlap:.3f} ({files[name]['pdfium']} vs "
              f"{files[name]['pypdf']} words)", "") for overlap, name in overlaps[:5]]
    only = {name: (r["pdfium"], r["pypdf"]) for name, r in files.items()
            if isinstance(r["pdfium"], str) != isinstance(r["pypdf"], str)}
    rows += [(f"  read by one engine only: {name}", f"pdfium: {a}; pypdf: {b}", "")
             for name, (a, b) in sorted(only.items())]
    return rows


def executors(out: Path, runs: int, quick: bool) -> list[Row]:
    return _executors(out, runs, quick, SHARED)


SECTIONS = {"speedup": speedup, "scale": scale, "jsonl": jsonl_overhead, "group": group_commit,
            "commit_steps": commit_steps, "pdf_engines": pdf_engines, "growth": growth,
            "commit_size": commit_size, "llm": llm_stage, "executors": executors,
            "resync": resync,
            "watch": watch_latency}
# Not in a default run: its first add alone takes several minutes.
OPTIONAL_SECTIONS = {"resync_60k": resync_60k}
