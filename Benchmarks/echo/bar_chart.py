#!/usr/bin/env python3
"""Draws a horizontal bar chart (SVG) of one figure per server from a small TSV file.

    python3 Benchmarks/echo/bar_chart.py FIGURES.tsv OUT.svg     (OUT.png: a PNG preview)

The TSV: optional `# key: value` lines first (title, caption, scale = linear | log,
highlight = the label prefix of our rows, default "swift-asyncio"), then a header line
`server<TAB>figure name`, then one `label<TAB>number` line per server, in the order to draw
(top to bottom). Rows whose label starts with the highlight prefix are drawn in colour, the
others in grey, each with its value at the end of its bar. The SVG is reproducible: no date,
fixed ids.

Needs matplotlib (`python3 -m pip install matplotlib`); without it, says so on stderr and
exits with status 3, so that a benchmark script can print its table and skip the chart.
"""

import sys
import textwrap


def read_figures(path):
    meta, rows, header = {}, [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                meta[key.strip()] = value.strip()
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise SystemExit(f"bar_chart.py: {path}: not two tab-separated fields: {line!r}")
            if header is None:
                header = fields
                continue
            try:
                rows.append((fields[0], float(fields[1]), fields[1]))
            except ValueError:
                raise SystemExit(f"bar_chart.py: {path}: not a number: {fields[1]!r}")
    if header is None or not rows:
        raise SystemExit(f"bar_chart.py: {path}: no figures")
    return meta, header, rows


def value_text(text):
    """The figure as the TSV gives it, with thousands separators."""
    whole, dot, fraction = text.partition(".")
    return f"{int(whole):,}" + dot + fraction if whole.lstrip("-").isdigit() else text


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source, target = sys.argv[1], sys.argv[2]
    meta, header, rows = read_figures(source)
    try:
        import matplotlib
    except ImportError:
        print("bar_chart.py: matplotlib is not installed, so no chart was drawn "
              "(install it with: python3 -m pip install matplotlib)", file=sys.stderr)
        return 3
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "swift-asyncio"   # fixed element ids: the same SVG every run
    plt.rcParams["svg.fonttype"] = "none"        # text as text: small files, searchable labels
    plt.rcParams["font.size"] = 10
    highlight = meta.get("highlight", "swift-asyncio")
    labels = [label for label, _, _ in rows]
    values = [value for _, value, _ in rows]
    texts = [text for _, _, text in rows]
    colours = ["#e8590c" if label.startswith(highlight) else "#adb5bd" for label in labels]

    height = 1.2 + 0.38 * len(rows)
    fig, ax = plt.subplots(figsize=(8, height))
    positions = range(len(rows))
    ax.barh(positions, values, color=colours, height=0.7)
    ax.set_yticks(list(positions), labels)
    ax.invert_yaxis()
    for tick, label in zip(ax.get_yticklabels(), labels):
        if label.startswith(highlight):
            tick.set_fontweight("bold")
    log = meta.get("scale", "linear") == "log"
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 1.5, max(values) * 6)
    else:
        ax.set_xlim(0, max(values) * 1.18)
    for position, value, text in zip(positions, values, texts):
        ax.text(value * (1.08 if log else 1) + (0 if log else max(values) * 0.01), position,
                value_text(text), va="center", fontsize=9)
    ax.set_xlabel(header[1] + (" (log scale)" if log else ""))
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="y", length=0)
    top, bottom = 1.0, 0.0
    if "title" in meta:
        fig.suptitle(meta["title"], x=0.01, y=0.99, ha="left", va="top", fontsize=11, fontweight="bold")
        top = 1.0   # tight_layout makes room for the suptitle itself
    if "caption" in meta:
        caption = textwrap.fill(meta["caption"], 120)
        fig.text(0.01, 0.01, caption, fontsize=8, color="#495057", va="bottom")
        bottom = (0.2 + 0.16 * caption.count("\n")) / height
    fig.tight_layout(rect=(0, bottom, 1, top))
    if target.endswith(".png"):   # a preview
        fig.savefig(target, dpi=110)
    else:
        fig.savefig(target, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    print(f"chart: {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
