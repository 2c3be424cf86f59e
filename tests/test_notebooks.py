"""Every notebook in nbs/ as a pytest item, run by nbdev's own runner so that `tst_flags`,
`#| eval: false`, `skip_exec` and `.notest` are honoured exactly as `nbdev-test` does.

Set NBDEV_TEST_FLAGS="slow gpu" to run the flagged cells too (on a GPU machine)."""

import os
import sys
import time
from pathlib import Path
import pytest
from fastcore.basics import str2bool
from fastcore.nbio import read_nb
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.processors import nb_frontmatter
from nbdev.test import test_nb as run_nb

CFG = get_config()
NBS = Path(CFG.nbs_path)


def _notebooks():
    nbs = sorted(Path(p) for p in nbglob(NBS, as_path=True))
    return [p for p in nbs if not (p.parent / '.notest').exists()]


def _flags(v):
    return v.split() if isinstance(v, str) else list(v)


@pytest.mark.parametrize('nb', _notebooks(), ids=lambda p: str(p.relative_to(NBS)))
def test_notebook(nb, monkeypatch, record_property):
    if str2bool(nb_frontmatter(read_nb(nb)).get('skip_exec', False)):
        pytest.skip('skip_exec in frontmatter')
    force = _flags(os.environ.get('NBDEV_TEST_FLAGS', ''))
    skip = [f for f in _flags(CFG.tst_flags) if f not in force]
    monkeypatch.chdir(nb.parent)
    monkeypatch.setenv('IN_TEST', '1')
    t0 = time.time()
    ok, _ = run_nb(nb, skip_flags=skip, force_flags=force, basepath=CFG.config_path, do_print=False)
    secs = time.time() - t0
    record_property('seconds', secs)
    print(f'\n[notebook] {nb.relative_to(NBS)}: {secs:.1f}s', file=sys.stderr)
    assert ok, f'{nb} failed (traceback above)'
