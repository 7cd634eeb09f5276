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
