"""The docs build: nbdev's offline processing of every notebook (the smoke test), the static HTML site,
an API doc for every exported symbol, and README.md in sync with nbs/index.ipynb."""

import importlib
import re
import subprocess
import sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')
    r = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--out', str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _page(syms: dict, name: str) -> str:
    "The docs page of a symbol, from nbdev's index (`'core.html#name'`)."
    return syms[name][0].split('#')[0]


def test_docs_site_has_index_and_every_module(site):
    assert (site / 'index.html').exists()
    from foundation_jets._modidx import d

    for mod, syms in d['syms'].items():
        for page in {_page(syms, n) for n in syms}:
            assert (site / page).exists(), f'no docs page {page} for {mod}'


def test_every_export_has_api_doc(site):
    from foundation_jets._modidx import d

    missing = []
    for mod, syms in d['syms'].items():
        module = importlib.import_module(mod)
        for name in getattr(module, '__all__', []):
            key = f'{mod}.{name}'
            if key not in syms:
                continue  # re-exported from another module
            html = (site / _page(syms, key)).read_text()
            if not re.search(rf'<h[2-4] id="{re.escape(name)}"', html):
                missing.append(f'{mod}.{name}')
    assert not missing, f'exported symbols without an API doc: {missing}'


def test_readme_in_sync_with_index():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
