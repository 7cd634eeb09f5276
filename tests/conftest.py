import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Caches and the user pattern library in a temp dir, so tests never touch $HOME."""
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))  # user pattern library
    monkeypatch.delenv("ARCHSEARCH_PATTERNS", raising=False)
    monkeypatch.setenv("ARCHSEARCH_REGISTRY", str(tmp_path_factory.mktemp("registry") / "datasets.json"))


@pytest.fixture(scope="session")
def digits():
    from archsearch.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_digits(digits):
    """A 512-image train / 128-image test slice: enough to learn, fast to train."""
    from dataclasses import replace

    return replace(digits, x_train=digits.x_train[:512], y_train=digits.y_train[:512],
                   x_test=digits.x_test[:128], y_test=digits.y_test[:128])


# the proposer tests' common scale: a 1-epoch base net at width 0.25 on 128 training images
PROPOSE_KW = dict(preset="tiny", width=0.25, epochs=1, device="cpu", batch_size=64, train_subset=128)


class BaseNets:
    """Trained base nets shared by the proposer tests: one proposals folder for the session,
    where each arch's plain base net (no training hooks) is trained once, on first ask, exactly
    where `propose` looks for it (`base_run_dir`). A proposal made there at `PROPOSE_KW` by a
    method that trains its base plainly (magnitude, lamp, l1norm, thinet, regression, the
    lottery's first round) reuses it instead of training again."""

    def __init__(self, workdir, data):
        self.workdir, self.data, self.kw = workdir, data, {**PROPOSE_KW, "workdir": workdir}

    def run_dir(self, arch: str, seed: int = 0):
        """The base spec of `arch` and the folder of its trained plain base net (trained now if new)."""
        from archsearch.config import resolve
        from archsearch.data import subset_train
        from archsearch.propose import base_run_dir, resolve_settings
        from archsearch.train import train

        kw = {k: v for k, v in PROPOSE_KW.items() if k != "device"}
        pn, _, st, schedule, base = resolve_settings(f"magnitude-{arch}-{self.data.name}", **kw)  # a plain base
        out = base_run_dir(self.workdir, base, pn.target.data, schedule, [], st.train_subset, seed)
        if not (out / "result.json").exists():
            train(base, subset_train(self.data, st.train_subset), schedule, seed=seed, device="cpu", out_dir=out,
                  checkpoint_every=resolve(st.preset).checkpoint_every, hooks=[])
        return base, out

    def model(self, arch: str, seed: int = 0):
        """The trained base net of `arch`: (its spec, the module in eval mode)."""
        from archsearch._io import load_state
        from archsearch.archs import build_with

        base, out = self.run_dir(arch, seed)
        return base, build_with(base, load_state(out / "model.pt", "model")).eval()


@pytest.fixture(scope="session")
def base_nets(tmp_path_factory, small_digits):
    return BaseNets(tmp_path_factory.mktemp("proposals"), small_digits)
