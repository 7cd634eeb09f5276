"""Plotly figures: parameter efficiency of generated nets, a pattern's shape, a sensitivity analysis.

HTML files embed plotly.js (no CDN), so they open offline. Colours follow the paper:
uniform red, pruned blue, guided green, transferred brown, random grey (ERK, which the paper did
not have, purple).
"""

from __future__ import annotations

import hashlib

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
# plotly at the top: this module is imported only to plot (never on `archsearch --help`'s path),
# and plotly (0.1-0.2 s) is small beside the torch that `generate` brings (2.6-3.2 s, measured)
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._io import write_text
from .errors import ArchsearchError, clip
from .generate import GENERATORS, KINDS
from .stats import STD_NOTE, over_seeds

COLORS = {name: g.colour for name, g in GENERATORS.items()}  # one home: the generator registry
# a sweep arm naming one of several patterns ("transferred:synflow-vgg16-c10"): colours apart from the registry's
ARM_PALETTE = ["#e377c2", "#ff7f0e", "#aec7e8", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"]


def arm_colour(arm: str) -> str:
    """A stable colour for a named-pattern arm (the same in every plot of every sweep)."""
    return ARM_PALETTE[int(hashlib.sha1(arm.encode()).hexdigest(), 16) % len(ARM_PALETTE)] if ":" in arm else "black"


def _wrap(text: str, width: int = 120) -> list[str]:
    """A caption as lines of at most ~`width` characters, broken after '; '."""
    lines: list[str] = []
    for part in (p for p in text.split("; ") if p) if text else []:
        if lines and len(lines[-1]) + len(part) + 2 <= width:
            lines[-1] += "; " + part
        else:
            lines.append(part)
    return lines


def headline(rows: list[dict]) -> tuple[str, str]:
    """The accuracy a figure draws: (column prefix, what it is). The final epoch's, the reports'
    headline; rows made without it (a hand-written results table) draw the best epoch's, and the
    axis says so."""
    if all(r.get("final_acc_mean") is not None for r in rows):
        return "final_acc", "final epoch"
    return "best_acc", "best epoch"


def seeds_caption(counts, what: str) -> str:
    """What the error bars show, for a caption: "accuracy at the final epoch, mean ± sample std
    (ddof=1) over 3 seeds"."""
    return f"accuracy at the {what}, {STD_NOTE} {over_seeds(counts)}"


X_KEYS = {"params": "params", "macs": "macs", "latency": "latency_ms"}  # the x measure -> its row column
X_TITLES = {"params": "parameters (non-zero)", "macs": "MACs per image", "latency": "latency (ms, measured)"}
KIND_TITLES = {"channels": "channel pruning", "sparsity": "weight pruning", "depth": "block pruning"}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) no other point beats: none costs at most as much
    and reaches at least as high, one of them strictly. In order of cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def efficiency_figure(rows: list[dict], x: str = "params", title: str = "", caption: str = ""):
    """Test accuracy at the final epoch (mean, error bars the sample std over seeds) against
    params, MACs or measured latency (log x), per generator: every point a marker, each
    generator's Pareto front (`pareto_front`) a line through its points that no other point of
    the generator beats, the others hollow. `x="all"`: one panel per measure the rows carry.

    `rows` are comparison rows (`compare.trained_rows`, `sweep.results.summary_rows`):
    generator, params, macs, optionally latency_ms, final_acc_mean, final_acc_std (or, in a
    hand-written table, best_acc_*: `headline`), seeds, and optionally stages (hover text) and
    kind: rows of two kinds (channels, sparsity) get one row of panels each, as in the paper's
    Figure 3.
    """
    if x != "all" and x not in X_KEYS:
        raise ValueError(f"x must be one of {', '.join(X_KEYS)} or all, got {x!r}")
    xs = [m for m in ((*X_KEYS,) if x == "all" else (x,)) if any(r.get(X_KEYS[m]) not in (None, "") for r in rows)]
    if not xs:
        raise ArchsearchError(f"no row has a {X_KEYS.get(x, x)} to plot against")
    acc, what = headline(rows)
    kinds = sorted({r.get("kind") or "" for r in rows}, key=lambda k: KINDS.index(k) if k in KINDS else 9)
    # a panel's title: its kind (where the rows say one) and, among several measures, its measure
    titles = [" · ".join(t for t in (KIND_TITLES.get(k, k), m if len(xs) > 1 else "") if t)
              for k in kinds for m in xs] if len(kinds) > 1 or len(xs) > 1 else None
    fig = make_subplots(rows=len(kinds), cols=len(xs), subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.12)
    shown = set()
    order = list(COLORS) + ["pattern", "search"]
    for row, kind in enumerate(kinds, start=1):
        for col, m in enumerate(xs, start=1):
            krows = [r for r in rows if (r.get("kind") or "") == kind and r.get(X_KEYS[m]) not in (None, "")]
            for gen in sorted({r["generator"] for r in krows}, key=lambda g: (order.index(g.split(":")[0])
                                                                             if g.split(":")[0] in order else 99, g)):
                _generator_traces(fig, gen, [r for r in krows if r["generator"] == gen], X_KEYS[m], acc,
                                  gen not in shown, row, col)
                shown.add(gen)
            fig.update_xaxes(title_text=X_TITLES[m], type="log", row=row, col=col)
        fig.update_yaxes(title_text=f"test accuracy (%), {what}, mean ± sample std", row=row, col=1)
    about = seeds_caption((r.get("seeds") for r in rows if r.get("seeds")), what)
    if acc == "best_acc":
        about += " (these rows carry no final-epoch accuracy)"
    about += "; lines: each generator's Pareto front (hollow: points its own front beats)"
    caption = "; ".join(c for c in (caption, about) if c)
    _titled(fig, title, caption, legend="generator")
    if len(kinds) > 1 or len(xs) > 1:
        fig.update_layout(height=max(450, 380 * len(kinds)), width=max(700, 460 * len(xs)))
    return fig


def _generator_traces(fig, gen: str, rs: list[dict], key: str, acc: str, legend: bool, row: int, col: int) -> None:
    """One generator's points (error bars: the sample std) and its Pareto front's line."""
    colour = COLORS.get(gen) or ("#9467bd" if gen == "search" else arm_colour(gen))
    rs = sorted(rs, key=lambda r: r[key])
    front = set(pareto_front([(r[key], r[f"{acc}_mean"]) for r in rs]))
    fig.add_trace(go.Scatter(
        x=[r[key] for r in rs], y=[r[f"{acc}_mean"] for r in rs],
        # one seed has no spread (std None): no bar rather than a bar of 0
        error_y={"type": "data", "array": [r.get(f"{acc}_std") for r in rs], "visible": True},
        mode="markers", name=gen, legendgroup=gen, showlegend=legend,
        marker={"color": colour, "symbol": ["circle" if i in front else "circle-open" for i in range(len(rs))],
                "size": 8},
        text=[_point_text(gen, r, acc) for r in rs], hovertemplate="%{text}<extra></extra>",
    ), row=row, col=col)
    if gen != "search":
        on = [r for i, r in enumerate(rs) if i in front]
        fig.add_trace(go.Scatter(x=[r[key] for r in on], y=[r[f"{acc}_mean"] for r in on], mode="lines",
                                 line={"color": colour}, legendgroup=gen, showlegend=False, hoverinfo="skip"),
                      row=row, col=col)


def _point_text(gen: str, r: dict, acc: str) -> str:
    """One point's hover text: its net, both accuracies over its seeds, its stages."""
    def cell(prefix: str) -> str:
        m, s = r.get(f"{prefix}_mean"), r.get(f"{prefix}_std")
        return "-" if m is None else f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")

    lat = r.get("latency_ms")
    return (f"{gen} {r.get('kind') or ''} {r.get('budget', '')}<br>params {r['params']:,}<br>MACs {r['macs']:,}<br>"
            + (f"latency {lat:.3g} ms<br>" if isinstance(lat, (int, float)) else "")
            + (f"final {cell('final_acc')}% · " if acc == "final_acc" else "") + f"best {cell('best_acc')}% "
            f"({r.get('seeds', '?')} seeds)" + (f"<br>stages {r['stages']}" if r.get("stages") is not None else ""))


def _titled(fig, title: str, caption: str, **layout) -> None:
    """The title with the caption under it, wrapped, and room above the plot for both."""
    lines = _wrap(caption)
    fig.update_layout(
        title={"text": title + "".join(f"<br><sup>{line}</sup>" for line in lines), "y": 0.965, "yanchor": "top"},
        template="plotly_white", legend={"title": layout.pop("legend")}, margin={"t": 90 + 18 * len(lines)},
        **layout)


def table_figure(rows: list[dict], arms: list[str], *, colours: dict[str, str] | None = None, title: str = "",
                 caption: str = ""):
    """A table sweep as grouped bars: one group per row (method, network, ratio), one bar per
    arm with its mean final-epoch accuracy and the sample std over seeds as its error bar; the
    paper's number, where cited, as a black tick on its arm's bar. An arm that is the same run
    as another in a row (`{arm}_same_as`: a Scratch-B whose epochs equal Scratch-E's) draws no
    bar of its own there: the other's bar says it stands for both. `rows` are
    `sweep.table_report.summary` rows."""
    fig = go.Figure()
    labels = [r["row"] for r in rows]
    for arm in arms:
        fig.add_trace(_arm_bars(arm, rows, arms, (colours or {}).get(arm, "black")))
        paper = [r.get(f"paper_{arm}") for r in rows]
        if any(isinstance(p, (int, float)) for p in paper):
            fig.add_trace(go.Scatter(
                x=labels, y=[p if isinstance(p, (int, float)) else None for p in paper], mode="markers",
                marker={"symbol": "line-ew-open", "size": 18, "color": "black", "line": {"width": 3}},
                name=f"paper ({arm})", offsetgroup=arm, legendgroup="paper",
                hovertemplate="%{x}<br>paper " + arm + ": %{y:.2f}%<extra></extra>"))
    tops = [(r.get(f"{a}_mean") or 0) + (r.get(f"{a}_std") or 0) for r in rows for a in arms]
    tops += [p for r in rows for a in arms if isinstance(p := r.get(f"paper_{a}"), (int, float))]
    # bars start at 0 (a cut axis would exaggerate the gaps); room above the tallest bar or paper
    # tick for its label
    fig.update_yaxes(title_text="test accuracy (%), final epoch, mean ± sample std",
                     range=[0, min(105.0, max(tops, default=95.0) * 1.1 + 2)])
    counts = [r[f"{a}_seeds"] for r in rows for a in arms if r.get(f"{a}_seeds")]
    caption = "; ".join(c for c in (caption, seeds_caption(counts, "final epoch")) if c)
    _titled(fig, title, caption, legend="arm", barmode="group", height=560 + 18 * len(_wrap(caption)))
    return fig


def _arm_bars(arm: str, rows: list[dict], arms: list[str], colour: str):
    """One arm's bars over the rows: the mean above each, the whole cell (± std, seeds, epochs)
    on hover; where another arm of the row is the same run as this one, both names."""
    ys, texts, hovers = [], [], []
    for r in rows:
        twins = [a for a in arms if r.get(f"{a}_same_as") == arm]
        y = None if r.get(f"{arm}_same_as") else r.get(f"{arm}_mean")
        ys.append(y)
        texts.append("" if y is None else f"{y:.1f}" + "".join(f" = {a}" for a in twins))
        hovers.append(f"{arm}: {r[arm] or 'not run'} ({r.get(f'{arm}_seeds', 0)} seeds, epochs "
                      f"{r.get(f'{arm}_epochs') or '-'})"
                      + "".join(f"; also {a}: the same run (its epochs equal {arm}'s)" for a in twins))
    return go.Bar(x=[r["row"] for r in rows], y=ys, name=arm, marker_color=colour, offsetgroup=arm,
                  error_y={"type": "data", "array": [r.get(f"{arm}_std") or 0 for r in rows], "visible": True},
                  text=texts, textposition="outside", cliponaxis=False, hovertext=hovers,
                  hovertemplate="%{x}<br>%{hovertext}<extra></extra>")


def pattern_figure(pattern: dict):
    """Per-layer kept widths against the original (channels), per-layer density plus the
    per-stage 3x3 keep-probability heatmaps of the paper's Figure 4 (sparsity), or which
    removable blocks each seed kept (depth)."""
    pv = pattern["provenance"]
    title = (f"{pattern['name']}: {pattern['kind']} pattern of {pv['method']} on {pattern['arch']}-{pattern['data']}, "
             f"ratio {pattern['ratio']:g}<br><sup>{len(pv['seeds'])} seeds, {pv.get('scale', '')}; "
             f"{pv['command']}; archsearch {pv['archsearch_version']}</sup>")
    layers = list(pattern.get("layer_names") or [f"{i + 1}" for i in range(len(pattern["base_widths"]))])
    base = np.asarray(pattern["base_widths"], dtype=float)
    if pattern["kind"] == "depth":
        fig = go.Figure([go.Bar(x=layers, y=pattern["layers"]["ratio_mean"], name="kept (share of seeds)",
                                marker_color=COLORS["pruned"],
                                error_y={"type": "data", "array": pattern["layers"]["ratio_std"]})])
        fig.update_layout(title=title, xaxis_title="removable block", yaxis_title="kept (1) or removed (0)",
                          yaxis_range=[0, 1.05], template="plotly_white")
        return fig
    if pattern["kind"] == "channels":
        m, s = np.asarray(pattern["layers"]["ratio_mean"]), np.asarray(pattern["layers"]["ratio_std"])
        fig = go.Figure([
            go.Bar(x=layers, y=base, name="original width", marker_color="#c7c7c7"),
            go.Bar(x=layers, y=m * base, name="kept (mean over seeds)", marker_color=COLORS["pruned"],
                   error_y={"type": "data", "array": s * base}),
        ])
        fig.update_layout(barmode="overlay", title=title, xaxis_title="channel group", yaxis_title="channels",
                          template="plotly_white")
        return fig
    n = max(pattern["stages"]) + 1
    fig = make_subplots(rows=2, cols=n, specs=[[{"colspan": n}] + [None] * (n - 1), [{}] * n],
                        subplot_titles=["density per layer"] + [f"stage {k + 1}" for k in range(n)],
                        vertical_spacing=0.15)
    fig.add_trace(go.Bar(x=layers, y=pattern["layers"]["density_mean"], name="density",
                         error_y={"type": "data", "array": pattern["layers"]["density_std"]},
                         marker_color=COLORS["pruned"]), row=1, col=1)
    for k, km in enumerate(pattern["stage"]["kernel_keep_mean"]):
        if km is None:  # a stage of 1x1 convs: densities alone
            continue
        fig.add_trace(go.Heatmap(z=km, zmin=0, zmax=1, colorscale="Blues", showscale=k == n - 1,
                                 text=np.round(km, 2), texttemplate="%{text}", hoverinfo="z"), row=2, col=k + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=2, col=k + 1)
        fig.update_xaxes(showticklabels=False, row=2, col=k + 1)
    fig.update_layout(title=title, template="plotly_white", showlegend=False)
    return fig


def sensitivity_figure(rows: list[dict], unpruned: float, threshold: float, title: str = "", caption: str = ""):
    """Test accuracy against the prune ratio of one unit at a time (a channel group, or a stage),
    the rest of the net unpruned, with no retraining: Li et al. 2017's Fig. 2(b) / 3. One panel
    per stage, one curve per unit; the unpruned accuracy (dashed) and that accuracy less the
    threshold (dotted) across every panel. `rows` are `sensitivity.rows` (accuracy in %)."""
    stages = sorted({r["stage"] for r in rows})
    fig = make_subplots(rows=1, cols=len(stages), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"stage {k}" for k in stages])
    for col, k in enumerate(stages, start=1):
        units = list(dict.fromkeys(r["unit"] for r in rows if r["stage"] == k))
        for unit in units:
            rs = sorted((r for r in rows if r["unit"] == unit), key=lambda r: r["ratio"])
            fig.add_trace(go.Scatter(
                x=[0.0] + [100 * r["ratio"] for r in rs], y=[unpruned] + [r["accuracy"] for r in rs],
                mode="lines+markers", name=unit, legendgroup=f"stage {k}", legendgrouptitle_text=f"stage {k}",
                text=["unpruned"] + [f"{unit}: {100 * r['ratio']:g}% pruned, {r['kept']}/{r['of']} channels kept<br>"
                                     f"{r['accuracy']:.2f}% (drop {r['drop']:.2f} points)<br>params {r['params']:,}, "
                                     f"MACs {r['macs']:,}" for r in rs],
                hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="channels pruned away (%)", range=[-2, 102], row=1, col=col)
    for y, dash in ((unpruned, "dash"), (unpruned - threshold, "dot")):
        fig.add_hline(y=y, line_dash=dash, line_color="grey", line_width=1)
    fig.update_yaxes(title_text="test accuracy (%), no retraining", row=1, col=1)
    about = (f"dashed: the unpruned net ({unpruned:.2f}%); dotted: {threshold:g} point{'' if threshold == 1 else 's'} "
             "below it, the drop up to which a derived pattern prunes a unit")
    _titled(fig, title, "; ".join(c for c in (caption, about) if c), legend="unit", height=640)
    return fig


def write_html(fig, path: str | os.PathLike) -> None:
    """Self-contained HTML (plotly.js embedded), written atomically. The name must end in
    .html: a browser (and `--png`, which writes NAME.png beside it) goes by it."""
    if Path(path).suffix.lower() not in (".html", ".htm"):
        raise ArchsearchError(f"{path}: the figure is HTML, so its file name must end in .html "
                              "(--png also writes NAME.png beside it)")
    write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))


def find_browser() -> str | None:
    """A headless-capable Chromium: $ARCHSEARCH_CHROMIUM, else chromium / chromium-browser / google-chrome."""
    env = os.environ.get("ARCHSEARCH_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _chromium(args: list[str], timeout: float):
    exe = find_browser()
    if exe is None:
        raise ArchsearchError("no Chromium found for rendering (apt install chromium, or set ARCHSEARCH_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="archsearch-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ArchsearchError(f"Chromium did not finish rendering in {timeout:.0f}s") from None


def render_png(html: str | os.PathLike, png: str | os.PathLike, width: int = 1100, height: int = 700,
               timeout: float = 90) -> None:
    """Screenshot an HTML file in headless Chromium (after its scripts ran)."""
    src, out = Path(html).resolve(), Path(png).resolve()
    tmp = out.with_name(f".{out.name}.tmp.png")
    tmp.unlink(missing_ok=True)  # a leftover of a render that timed out is no screenshot of this one
    try:
        r = _chromium([f"--window-size={width},{height}", "--virtual-time-budget=8000", f"--screenshot={tmp}",
                       src.as_uri()], timeout)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise ArchsearchError(f"Chromium wrote no screenshot of {src} (exit {r.returncode}: "
                                  f"{clip((r.stderr.strip().splitlines() or [''])[-1], 200)})")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def rendered_dom(html: str | os.PathLike, timeout: float = 90) -> str:
    """The DOM of an HTML file after headless Chromium ran its scripts (to check what drew)."""
    r = _chromium(["--virtual-time-budget=8000", "--dump-dom", Path(html).resolve().as_uri()], timeout)
    return r.stdout
