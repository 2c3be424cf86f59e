"""The ParT parity check of nbs/14_models.part runs only where weaver-core (the original ParT) is importable; the
Makefile installs it (--no-deps), so in CI it must be there, or the parity check would be skipped silently."""

import importlib.util


def test_weaver_core_is_installed():
    assert importlib.util.find_spec('weaver') is not None, 'weaver-core missing: `make setup` installs it --no-deps'
