"""Export (issue 15): every family's network round-trips through torch.export, TorchScript and
ONNX with the original module's outputs; masks are folded; a failed check writes nothing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from archsearch import export as E
from archsearch.archs import base_spec, build
from archsearch.archs.tv import tv_family
from archsearch.cli import cli
from archsearch.errors import ArchsearchError
from archsearch.generate import generate

ONNX = pytest.mark.skipif(not E.onnx_available(), reason="the onnx extra is not installed")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def _spec(name: str, width: float):
    if name.startswith("tv."):
        return tv_family(name[3:]).base(0, 10, width, input_size=32)
    return base_spec(name, 10, width)


def _trained_like(spec, seed=0):
    """A state with every BN's statistics and affine moved off their initial values (so eval
    mode really uses them)."""
    torch.manual_seed(seed)
    model = build(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    return model.state_dict()


@pytest.mark.parametrize("name,width,formats", [
    ("vgg11", 0.25, ["export", "torchscript"]),
    ("resnet20", 0.5, ["export", "torchscript"]),
    ("preresnet56", 0.25, ["export", "torchscript"]),  # channel selection: an index_select in forward
    pytest.param("densenet40", 0.25, ["export", "torchscript", "onnx"], marks=[pytest.mark.slow, ONNX]),
    ("tv.resnet18", 0.25, ["export", "torchscript"]),
    ("tv.mobilenet_v2", 0.25, ["export"]),  # depthwise convs
    pytest.param("tv.mobilenet_v2", 0.25, ["torchscript", "onnx"], marks=[pytest.mark.slow, ONNX]),
])
def test_export_round_trips_with_the_original_outputs(name, width, formats, tmp_path):
    spec = _spec(name, width)
    state = _trained_like(spec)
    man = E.export(spec, state, tmp_path / "out", formats)
    out = tmp_path / "out"
    assert sorted(man["formats"]) == sorted(formats)
    x = torch.randn(5, 3, 32, 32)  # a batch size the check did not use
    ref = E.deployable(spec, state)(x)
    if "export" in formats:
        torch.testing.assert_close(torch.export.load(str(out / "model.pt2")).module()(x), ref, atol=1e-4, rtol=1e-4)
    if "torchscript" in formats:
        torch.testing.assert_close(torch.jit.load(str(out / "model.ts"))(x), ref, atol=1e-4, rtol=1e-4)
    if "onnx" in formats:
        import onnxruntime as ort

        got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"input": x.detach().numpy()})[0]
        np.testing.assert_allclose(got, ref.detach().numpy(), atol=1e-4, rtol=1e-4)
    # spec and weights come along: archsearch rebuilds the same network from them
    again = build(type(spec).load(out / "spec.json"))
    again.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    torch.testing.assert_close(again.eval()(x), ref)
    assert json.loads((out / "export.json").read_text())["formats"] == man["formats"]


@pytest.mark.parametrize("formats", [["export", "torchscript"], pytest.param(["onnx"], marks=ONNX)])
def test_a_sparse_net_exports_with_its_masks_folded(formats, tmp_path):
    target = base_spec("vgg11", 10, 0.25)
    from archsearch.counting import count

    spec = generate("uniform", target, 0.3 * count(target).params_nonzero, sparse=True, seed=1).spec
    state = _trained_like(spec)
    assert any(k.endswith("weight_mask") for k in state)
    model = E.deployable(spec, state)
    assert not any(k.endswith("weight_mask") for k in model.state_dict())
    conv = next(n for n in spec.masks)
    w = model.get_submodule(conv).weight
    assert torch.equal(w != 0, torch.from_numpy(spec.masks[conv]) & (w != 0)) and (w == 0).float().mean() > 0.5
    man = E.export(spec, state, tmp_path / "out", formats)
    assert all(r["ok"] for r in man["formats"].values())


def test_a_failed_check_writes_nothing_and_keeps_the_earlier_export(tmp_path, monkeypatch):
    spec = _spec("vgg11", 0.25)
    state = _trained_like(spec)
    out = tmp_path / "out"
    E.export(spec, state, out, ["export"])
    before = sorted(p.name for p in out.iterdir())
    save, run = E._EXPORTERS["torchscript"]
    monkeypatch.setitem(E._EXPORTERS, "torchscript", (save, lambda p, xs: [y + 1e-2 for y in run(p, xs)]))
    with pytest.raises(ArchsearchError, match="torchscript export of vgg11: its outputs differ .*nothing was written"):
        E.export(spec, state, out, ["export", "torchscript"])
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial folder left beside it
    # nor the folders made on the way to a new one
    with pytest.raises(ArchsearchError, match="nothing was written"):
        E.export(spec, state, tmp_path / "a" / "b" / "new", ["torchscript"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # outputs of another shape that broadcast against the original's (one row per batch) fail too
    monkeypatch.setitem(E._EXPORTERS, "torchscript", (save, lambda p, xs: [y[:1] for y in run(p, xs)]))
    with pytest.raises(ArchsearchError, match="torchscript export of vgg11: its outputs have other shapes"):
        E.export(spec, state, out, ["export", "torchscript"])


def test_weights_that_do_not_fit_are_one_line(tmp_path):
    with pytest.raises(ArchsearchError, match="the weights do not fit vgg11"):
        E.export(_spec("vgg11", 0.25), _trained_like(_spec("vgg11", 0.5)), tmp_path / "o", ["export"])


def test_cli_exports_a_trained_run_with_its_preprocessing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--out", "run"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["export", "run", "--format", "export,torchscript"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "run" / "export" / "export.json").read_text())
    assert man["trained"] and man["preprocess"]["size"] == 32 and man["preprocess"]["classes"] == [str(i) for i in range(10)]
    assert man["training"]["data"] == "digits" and man["command"].startswith("archsearch export")
    assert (tmp_path / "run" / "export" / "model.pt2").is_file()


@pytest.mark.parametrize("args,needle", [
    (["export"], "give RUN_DIR"),
    (["export", ""], "give RUN_DIR"),  # an empty argument (found by the fuzz test: a TypeError before)
    (["export", "nothere"], "does not exist"),
    (["export", "--spec", "nothere.json"], "no spec at"),
    (["export", "--spec", "s.json", "--format", "gif"], "unknown export format 'gif'"),
    (["export", "--spec", "s.json", "--weights", "bad.pt"], "cannot read weights"),
    (["export", "--spec", "s.json", "--out", "taken"], "not an archsearch export"),
])
def test_cli_bad_input_is_one_line(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _spec("vgg11", 0.25).save(tmp_path / "s.json")
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    (tmp_path / "taken").mkdir()
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and needle in r.output and len(r.output.strip().splitlines()) == 1, r.output


# -- the destination (issue 27): only an earlier export is replaced, and every check comes first --------
def _tree(root) -> dict:
    """Every entry under `root` (links not followed): a file's bytes, a link's target, a folder."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            elif not os.path.isfile(p):
                out[rel] = ("special",)
            else:
                out[rel] = ("file", open(p, "rb").read())
    return out


def _export_cli(tmp_path, out, *extra):
    return CliRunner().invoke(cli, ["export", "--spec", str(tmp_path / "s.json"), "--format", "torchscript",
                                    "--out", str(out), *extra])


@pytest.mark.parametrize("case", ["any export.json", "our export plus a file", "our export plus a folder",
                                  "a manifest naming other files", "export.json not JSON", "export.json a link"])
def test_a_folder_that_is_not_an_earlier_export_keeps_every_file(case, tmp_path, monkeypatch):
    """`export --out DIR` with DIR holding export.json beside other files replaced the whole folder
    (issue 27, item 1). Only a folder whose manifest names everything in it is ours."""
    monkeypatch.chdir(tmp_path)
    spec = _spec("vgg11", 0.25)
    spec.save(tmp_path / "s.json")
    d = tmp_path / "mine"
    if case == "any export.json":
        d.mkdir()
        (d / "export.json").write_text('{"note": "my own export.json"}')
        (d / "thesis.tex").write_text("years of work")
    elif case.startswith("our export"):
        E.export(spec, None, d, ["torchscript"])
        if case.endswith("a file"):
            (d / "notes.txt").write_text("mine")
        else:
            (d / "data").mkdir()
            (d / "data" / "x.bin").write_bytes(b"\0\1")
    elif case == "a manifest naming other files":
        E.export(spec, None, d, ["torchscript"])
        man = json.loads((d / "export.json").read_text())
        man["formats"]["torchscript"]["file"] = "thesis.tex"
        (d / "export.json").write_text(json.dumps(man))
        (d / "thesis.tex").write_text("years of work")
    elif case == "export.json not JSON":
        d.mkdir()
        (d / "export.json").write_bytes(b"\xff not json")
        (d / "model.pt").write_bytes(b"my own weights")
    else:
        E.export(spec, None, d, ["torchscript"])
        (tmp_path / "elsewhere.json").write_text((d / "export.json").read_text())
        (d / "export.json").unlink()
        (d / "export.json").symlink_to(tmp_path / "elsewhere.json")
    before = _tree(tmp_path)
    r = _export_cli(tmp_path, "mine")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "--out mine exists and is not an archsearch export" in r.output, r.output
    assert _tree(tmp_path) == before  # every file and byte, and nothing beside it


def test_an_earlier_export_is_replaced_and_a_linked_out_is_written_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _spec("vgg11", 0.25)
    spec.save(tmp_path / "s.json")
    r = _export_cli(tmp_path, "deploy")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["export.json", "model.ts", "spec.json"]
    (tmp_path / "link").symlink_to("deploy")
    r = CliRunner().invoke(cli, ["export", "--spec", "s.json", "--format", "export", "--out", "link"])
    assert r.exit_code == 0, r.output
    # the link is kept and still names the same folder, which holds the new export
    assert (tmp_path / "link").is_symlink() and str((tmp_path / "link").readlink()) == "deploy"
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["export.json", "model.pt2", "spec.json"]
    assert list(json.loads((tmp_path / "deploy" / "export.json").read_text())["formats"]) == ["export"]
    # no stray .link.old, .deploy.old or temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy", "link", "s.json"]


def test_a_dangling_out_link_is_named_as_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _spec("vgg11", 0.25).save(tmp_path / "s.json")
    (tmp_path / "dang").symlink_to("nowhere")
    before = _tree(tmp_path)
    r = CliRunner().invoke(cli, ["export", "--spec", "s.json", "--format", "torchscript", "--out", "dang"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "--out dang is a link to nowhere, which does not exist" in r.output and ".dang." not in r.output
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("out,needle", [
    (".", "--out . is the current folder or holds it"),
    ("..", "--out .. is the current folder or holds it"),
    ("/", "--out / is the root folder"),
    ("s.json", "Directory 's.json' is a file"),  # click's own check of --out
    ("fifo", "--out fifo exists and is not a folder"),
    ("s.json/sub", "s.json is not a folder"),
    ("run", "--out run is the run folder run or holds it"),
    ("run/..", "is the current folder or holds it"),
    ("taken", "--out taken exists and is not an archsearch export (no export.json)"),
])
def test_every_check_of_the_destination_comes_before_any_work(out, needle, tmp_path, monkeypatch):
    """`export RUN --out .` failed with a ValueError after the work was done (issue 27, item 9)."""
    monkeypatch.chdir(tmp_path)
    spec = _spec("vgg11", 0.25)
    spec.save(tmp_path / "s.json")
    (tmp_path / "run").mkdir()
    spec.save(tmp_path / "run" / "spec.json")
    torch.save(_trained_like(spec), tmp_path / "run" / "model.pt")
    (tmp_path / "taken").mkdir()
    os.mkfifo(tmp_path / "fifo")

    def no_work(*a, **k):
        raise AssertionError("the network was built before the destination was checked")

    monkeypatch.setattr(E, "build_with", no_work)
    before = _tree(tmp_path)
    r = CliRunner().invoke(cli, ["export", "run", "--format", "torchscript", "--out", out])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert needle in r.output, r.output
    assert _tree(tmp_path) == before


def test_an_unwritable_parent_is_refused_before_any_work(tmp_path, monkeypatch):
    spec = _spec("vgg11", 0.25)
    monkeypatch.setattr(E, "build_with", lambda *a, **k: pytest.fail("built before the check"))
    real_access = E.os.access
    monkeypatch.setattr(E.os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else
                        real_access(p, mode))
    (tmp_path / "ro").mkdir()
    with pytest.raises(ArchsearchError, match=r"--out .*ro/a/b: cannot write in .*ro \(permission denied\)"):
        E.export(spec, None, tmp_path / "ro" / "a" / "b", ["torchscript"])
    assert list((tmp_path / "ro").iterdir()) == []


def test_out_dot_inside_an_earlier_export_is_refused_before_any_work(tmp_path, monkeypatch):
    """The reproduction of item 9: the current folder is an earlier export, so it passed the old
    check, and `--out .` failed with a ValueError once the work was done."""
    spec = _spec("vgg11", 0.25)
    E.export(spec, None, tmp_path / "deploy", ["torchscript"])
    spec.save(tmp_path / "s.json")
    monkeypatch.chdir(tmp_path / "deploy")
    monkeypatch.setattr(E, "build_with", lambda *a, **k: pytest.fail("built before the check"))
    before = _tree(tmp_path)
    r = CliRunner().invoke(cli, ["export", "--spec", "../s.json", "--format", "torchscript", "--out", "."])
    assert r.exit_code == 2 and "--out . is the current folder or holds it" in r.output, r.output
    assert _tree(tmp_path) == before
