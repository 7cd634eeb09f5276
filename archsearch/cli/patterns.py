"""`archsearch patterns list|show`: the pattern library, and how a pattern is drawn in text."""

from __future__ import annotations

import click

from ..errors import ArchsearchError


def bar(frac: float, width: int = 24) -> str:
    n = int(round(max(0.0, min(1.0, frac)) * width))
    return "█" * n + "·" * (width - n)


def stage_table(pat: dict) -> str:
    """One row per stage: its share kept (blocks, channels) or density and 3x3 keep map."""
    stages, base = pat["stages"], pat["base_widths"]
    rows = []
    if pat["kind"] == "depth":
        rows.append(f"{'stage':>5} {'removable blocks':>16}  {'share kept':>15}")
        for k, (m, sd) in enumerate(zip(pat["stage"]["ratio_mean"], pat["stage"]["ratio_std"])):
            rows.append(f"{k + 1:>5} {sum(s == k for s in stages):>16}  {m:>7.3f} ± {sd:<5.3f} {bar(m)}")
    elif pat["kind"] == "channels":
        rows.append(f"{'stage':>5} {'layers':>6} {'width':>6}  {'kept ratio':>15}")
        for k, (m, sd) in enumerate(zip(pat["stage"]["ratio_mean"], pat["stage"]["ratio_std"])):
            idx = [i for i, s in enumerate(stages) if s == k]
            rows.append(f"{k + 1:>5} {len(idx):>6} {base[idx[0]]:>6}  {m:>7.3f} ± {sd:<5.3f} {bar(m)}")
    else:
        rows.append(f"{'stage':>5} {'layers':>6} {'width':>6}  {'density':>15}  3x3 keep probability (rows)")
        for k, (m, sd) in enumerate(zip(pat["stage"]["density_mean"], pat["stage"]["density_std"])):
            idx = [i for i, s in enumerate(stages) if s == k]
            km = pat["stage"]["kernel_keep_mean"][k]
            grid = "(1x1 convs only)" if km is None else " | ".join(" ".join(f"{v:.2f}" for v in row) for row in km)
            rows.append(f"{k + 1:>5} {len(idx):>6} {base[idx[0]]:>6}  {m:>7.3f} ± {sd:<5.3f}  {grid}")
    return "\n".join(rows)


def layer_table(p: dict) -> list[str]:
    """One row per layer (per block of a depth pattern): kept against the original."""
    if p["kind"] == "depth":
        names = p.get("layer_names") or [str(i + 1) for i in range(len(p["stages"]))]
        return [f"{'block':>10} {'stage':>5} {'kept (share of seeds)':>22}"] + [
            f"{n:>10} {s + 1:>5} {m:>22.3f} {bar(m)}" for n, s, m in zip(names, p["stages"], p["layers"]["ratio_mean"])]
    if p["kind"] == "channels":
        return [f"{'layer':>5} {'stage':>5} {'orig':>5} {'kept':>7} {'ratio':>15}"] + [
            f"{i + 1:>5} {s + 1:>5} {b:>5} {m * b:>7.1f} {m:>7.3f} ± {sd:<5.3f} {bar(m)}"
            for i, (s, b, m, sd) in enumerate(zip(p["stages"], p["base_widths"], p["layers"]["ratio_mean"],
                                                  p["layers"]["ratio_std"]))]
    return [f"{'layer':>5} {'stage':>5} {'orig':>5} {'density':>15}"] + [
        f"{i + 1:>5} {s + 1:>5} {b:>5} {m:>7.3f} ± {sd:<5.3f} {bar(m)}"
        for i, (s, b, m, sd) in enumerate(zip(p["stages"], p["base_widths"], p["layers"]["density_mean"],
                                              p["layers"]["density_std"]))]


@click.group()
def patterns():
    """The pattern library: list its entries or show one.

    \b
    Examples:
      archsearch patterns list
      archsearch patterns show slimming-vgg16-c10
    """


@patterns.command("list")
def patterns_list():
    """List every pattern on the search path ($ARCHSEARCH_PATTERNS, user, repo, installed).

    \b
    Example:
      archsearch patterns list
    """
    from .. import patterns as P  # torch (archs): kept out of `archsearch --help`

    rows = []
    for e in P.entries():
        try:
            p = P.load_pattern(e.path)
            pv = p["provenance"]
            rows.append((e.name, p["kind"], f"{p['arch']}-{p['data']}", f"{p['ratio']:g}", str(len(pv["seeds"])),
                         f"w{pv['width']:g}/e{pv['epochs']}", _pct(p["accuracy"].get("base")),
                         f"{e.origin}: {e.path}"))
        except ArchsearchError as err:  # one bad file must not hide the good ones
            click.echo(f"warning: skipped {e.origin} pattern {e.name}: {err}", err=True)
    if not rows:
        click.echo("the library is empty; searched: " + ", ".join(str(d.path) for d in P.search_path()))
        return
    head = ("name", "kind", "target", "ratio", "seeds", "scale", "base acc", "where")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _pct(acc: dict | None) -> str:
    return "-" if not acc else f"{100 * acc['mean']:.1f}%"


@patterns.command("show")
@click.argument("name")
def patterns_show(name):
    """Show one pattern: per-layer kept widths against the original, per-stage summary, provenance.

    \b
    Example:
      archsearch patterns show slimming-vgg16-c10
    """
    from .. import patterns as P  # torch (archs): kept out of `archsearch --help`

    e = P.find(name)
    p = P.load_pattern(e.path)
    pv = p["provenance"]
    click.echo(f"{e.name} ({e.origin}: {e.path})")
    click.echo(f"{p['kind']} pattern of {pv['method']} on {p['arch']}-{p['data']} at ratio {p['ratio']:g}; "
               f"{len(pv['seeds'])} seed(s) {pv['seeds']}; {pv.get('scale', '')}")
    click.echo(P.accuracy_line(p))
    click.echo(f"made by: {pv['command']} (archsearch {pv['archsearch_version']}, torch {pv.get('torch_version', '?')}, "
               f"{pv.get('date', '?')})")
    click.echo("")
    for line in layer_table(p):
        click.echo(line)
    click.echo("")
    click.echo(stage_table(p))
