"""Plotly figures: parameter efficiency of generated nets, and a pattern's shape.

HTML files embed plotly.js (no CDN), so they open offline. Colours follow the paper:
uniform red, pruned blue, guided green, transferred brown, random grey.
"""

from __future__ import annotations

import os

import numpy as np

from ._io import write_text

COLORS = {"uniform": "#d62728", "pruned": "#1f77b4", "guided": "#2ca02c", "transferred": "#8c564b",
          "random": "#7f7f7f"}


def efficiency_figure(rows: list[dict], x: str = "params", title: str = "", caption: str = ""):
    """Test accuracy (mean +- std over seeds) against params (log x) or MACs, per generator.

    `rows` are comparison rows (`compare.trained_rows`): generator, params, macs,
    best_acc_mean, best_acc_std, seeds, and optionally stages (hover text).
    """
    import plotly.graph_objects as go

    if x not in ("params", "macs"):
        raise ValueError(f"x must be params or macs, got {x!r}")
    fig = go.Figure()
    for gen in sorted({r["generator"] for r in rows}, key=lambda g: list(COLORS).index(g) if g in COLORS else 99):
        rs = sorted((r for r in rows if r["generator"] == gen), key=lambda r: r[x])
        fig.add_trace(go.Scatter(
            x=[r[x] for r in rs], y=[r["best_acc_mean"] for r in rs],
            error_y={"type": "data", "array": [r["best_acc_std"] for r in rs], "visible": True},
            mode="lines+markers", name=gen, line={"color": COLORS.get(gen, "black")},
            text=[f"{gen} {r.get('budget', '')}<br>params {r['params']:,}<br>MACs {r['macs']:,}<br>"
                  f"best {r['best_acc_mean']:.2f} ± {r['best_acc_std']:.2f}% ({r.get('seeds', '?')} seeds)"
                  + (f"<br>stages {r['stages']}" if r.get("stages") is not None else "") for r in rs],
            hovertemplate="%{text}<extra></extra>",
        ))
    fig.update_layout(
        title={"text": title + (f"<br><sup>{caption}</sup>" if caption else "")},
        xaxis={"title": "parameters (non-zero)" if x == "params" else "MACs per image", "type": "log"},
        yaxis={"title": "test accuracy (%), best epoch, mean ± std"}, template="plotly_white",
        legend={"title": "generator"},
    )
    return fig


def pattern_figure(pattern: dict):
    """Per-layer kept widths against the original (channels), or per-layer density plus
    the per-stage 3x3 keep-probability heatmaps of the paper's Figure 4 (sparsity)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pv = pattern["provenance"]
    title = (f"{pattern['name']}: {pattern['kind']} pattern of {pv['method']} on {pattern['arch']}-{pattern['data']}, "
             f"ratio {pattern['ratio']:g}<br><sup>{len(pv['seeds'])} seeds, {pv.get('scale', '')}; "
             f"{pv['command']}; archsearch {pv['archsearch_version']}</sup>")
    layers = [f"{i + 1}" for i in range(len(pattern["base_widths"]))]
    base = np.asarray(pattern["base_widths"], dtype=float)
    if pattern["kind"] == "channels":
        m, s = np.asarray(pattern["layers"]["ratio_mean"]), np.asarray(pattern["layers"]["ratio_std"])
        fig = go.Figure([
            go.Bar(x=layers, y=base, name="original width", marker_color="#c7c7c7"),
            go.Bar(x=layers, y=m * base, name="kept (mean over seeds)", marker_color=COLORS["pruned"],
                   error_y={"type": "data", "array": s * base}),
        ])
        fig.update_layout(barmode="overlay", title=title, xaxis_title="conv layer", yaxis_title="channels",
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
        fig.add_trace(go.Heatmap(z=km, zmin=0, zmax=1, colorscale="Blues", showscale=k == n - 1,
                                 text=np.round(km, 2), texttemplate="%{text}", hoverinfo="z"), row=2, col=k + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=2, col=k + 1)
        fig.update_xaxes(showticklabels=False, row=2, col=k + 1)
    fig.update_layout(title=title, template="plotly_white", showlegend=False)
    return fig


def write_html(fig, path: str | os.PathLike) -> None:
    """Self-contained HTML (plotly.js embedded), written atomically."""
    write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
