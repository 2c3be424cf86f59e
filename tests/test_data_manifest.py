"""data/ stays under 30 MiB and every file in it is listed in data/manifest.json with a matching sha256."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('manifest', ROOT / 'tools' / 'manifest.py')
manifest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(manifest)


def test_manifest_matches_data():
    files = manifest.load()
    assert files, 'data/manifest.json lists no files'
    assert manifest.problems(files) == []


def test_manifest_entries_are_complete():
    for e in manifest.load():
        for k in ('path', 'description', 'command', 'licence', 'bytes', 'sha256'):
            assert e.get(k) not in (None, ''), f'{e.get("path")}: manifest field {k!r} is empty'
