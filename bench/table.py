"""A results file of bench.models as the README's Markdown table: per model, fastnn's samples/s in
each mode and batch, and its speed over the fastest peer of that row.

``python -m bench.table bench/results/models-zoo-<date>.json`` (``--peers`` to compare with
some peers only; ``--against`` each peer in its own column instead of the fastest).
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


def markdown(rows: list[dict], peers: list[str], against_each: bool = False) -> str:
    """The table: one line per model, a samples/s column per (mode, batch) with its ratios."""
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
            cells.append(f"{row['fastnn']:,.0f}")
            if against_each:
                cells += [f"{row['fastnn'] / row[fw]:.2f}x" if row.get(fw) else "-" for fw in peers]
            else:
                cells.append(fastest_peer_cell(row, peers))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="a bench.models result as a Markdown table")
    parser.add_argument("result", help="a bench/results/models-*.json file")
    parser.add_argument("--peers", nargs="*", help=f"of {', '.join(PEER_NAMES)} (default: all)")
    parser.add_argument("--against", action="store_true", help="a ratio column per peer")
    args = parser.parse_args(argv)
    with open(args.result) as f:
        result = json.load(f)
    rows = result["rows"]
    print(markdown(rows, peers_of(rows, args.peers), args.against))
    skipped = result.get("skipped", {})
    if skipped:
        print("\n" + "\n".join(f"{name}: skipped, {reason}" for name, reason in skipped.items()))


if __name__ == "__main__":
    main()
