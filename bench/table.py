"""A results file of bench.models as the README's Markdown table: per model, fastnn's samples/s in
each mode and batch, and its speed over the fastest peer of that row.

``python -m bench.table bench/results/models-zoo-<date>.json`` (``--peers`` to compare with
some peers only; ``--against`` each peer in its own column instead of the fastest). A row
measured while other processes took more than ``--busy`` of the machine's CPU is marked with a
dagger: its figures, PyTorch's most, are lower than on an idle machine. Given several files (runs
of the same frameworks), each row is taken from the run in which other processes took the least
CPU, and the table names the file of each row.
"""

from __future__ import annotations

import argparse
import json

PEER_NAMES = {
    "pytorch": "PyTorch eager",
    "pytorch_channels_last": "PyTorch channels_last",
    "pytorch_tuned": "PyTorch tuned",
    "keras_jax": "Keras, JAX",
    "keras_tensorflow": "Keras, TensorFlow",
    "keras_torch": "Keras, torch",
    "onnxruntime": "ONNX Runtime",  # bench.models --inference
}


def peers_of(rows: list[dict], only: list[str] | None) -> list[str]:
    found = [fw for fw in PEER_NAMES if any(fw in row for row in rows)]
    return [fw for fw in found if not only or fw in only]


def cases_of(rows: list[dict]) -> list[tuple[str, int]]:
    return list(dict.fromkeys((row["mode"], row["batch"]) for row in rows))


def case_title(mode: str, batch: int) -> str:
    return f"{'training' if mode == 'train' else 'inference'}, batch {batch}"


def fastest_peer_cell(row: dict, peers: list[str]) -> str:
    fastest = max((fw for fw in peers if row.get(fw)), key=lambda fw: row[fw])
    return f"{row['fastnn'] / row[fastest]:.2f}x ({PEER_NAMES[fastest]})"


def markdown(rows: list[dict], peers: list[str], against_each=False, busy=None) -> str:
    """The table: one line per model, a samples/s column per (mode, batch) with its ratios;
    with ``busy``, a dagger on the rows other processes took more of the CPU than that in."""
    cases = cases_of(rows)
    header = ["model"]
    for mode, batch in cases:
        header.append(case_title(mode, batch))
        header += [f"vs {PEER_NAMES[fw]}" for fw in peers] if against_each else ["vs fastest peer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_case = {(row["model"], row["mode"], row["batch"]): row for row in rows}
    for model in dict.fromkeys(row["model"] for row in rows):
        cells = [model]
        for mode, batch in cases:
            row = by_case.get((model, mode, batch))
            if row is None:
                cells += ["-"] * (1 + (len(peers) if against_each else 1))
                continue
            dagger = " †" if busy is not None and (row.get("others_cpu") or 0) > busy else ""
            cells.append(f"{row['fastnn']:,.0f}{dagger}")
            if against_each:
                cells += [f"{row['fastnn'] / row[fw]:.2f}x" if row.get(fw) else "-" for fw in peers]
            else:
                cells.append(fastest_peer_cell(row, peers))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quietest_rows(results: dict[str, dict]) -> list[dict]:
    """Per (model, mode, batch), the row of the run in which others took the least CPU, with
    its file as ``source``; in the order the rows first appear."""
    chosen = {}
    for path, result in results.items():
        for row in result["rows"]:
            key = row["model"], row["mode"], row["batch"]
            row = {**row, "source": path}
            if key not in chosen or (row.get("others_cpu") or 0) < (
                chosen[key].get("others_cpu") or 0
            ):
                chosen[key] = row
    return list(chosen.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="a bench.models result as a Markdown table")
    parser.add_argument("results", nargs="+", help="bench/results/models-*.json files")
    parser.add_argument("--peers", nargs="*", help=f"of {', '.join(PEER_NAMES)} (default: all)")
    parser.add_argument("--against", action="store_true", help="a ratio column per peer")
    parser.add_argument("--busy", type=float, default=0.2, help="others' CPU share to mark")
    args = parser.parse_args(argv)
    results = {}
    for path in args.results:
        with open(path) as f:
            results[path] = json.load(f)
    rows = quietest_rows(results)
    print(markdown(rows, peers_of(rows, args.peers), args.against, args.busy))
    if any((row.get("others_cpu") or 0) > args.busy for row in rows):
        print(f"\n† other processes took more than {args.busy:.0%} of the CPU during the row")
    for path in results if len(results) > 1 else ():
        taken = [f"{r['model']} {r['mode']} {r['batch']}" for r in rows if r["source"] == path]
        print(f"\nfrom {path}: {', '.join(taken) or 'no row'}")
    skipped = {k: v for result in results.values() for k, v in result.get("skipped", {}).items()}
    if skipped:
        print("\n" + "\n".join(f"{name}: skipped, {reason}" for name, reason in skipped.items()))


if __name__ == "__main__":
    main()
