"""Write README.md from nbs/index.ipynb (nbdev's `nbdev-readme` needs Quarto, which these machines lack).

Markdown cells are copied, visible code cells become fenced Python with their stored text output,
`#| hide` cells are left out. `python tools/readme.py --check` exits 1 if README.md is stale."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = '<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n'


def render(nb_path: Path = ROOT / 'nbs' / 'index.ipynb') -> str:
    nb = json.loads(nb_path.read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip('\n')
        if c['cell_type'] == 'markdown':
            parts.append(src)
        elif c['cell_type'] == 'code':
            lines = src.splitlines()
            if any(line.strip() in ('#| hide', '#|hide') or line.startswith('#| default_exp') for line in lines):
                continue
            code = '\n'.join(line for line in lines if not line.startswith('#|'))
            parts.append(f'```python\n{code}\n```')
            for o in c.get('outputs', []):
                text = o.get('text') or o.get('data', {}).get('text/plain')
                if text:
                    parts.append('    ' + ''.join(text).rstrip('\n').replace('\n', '\n    '))
    return HEADER + '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    out, readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == out
        print('README.md is in sync with nbs/index.ipynb' if ok else 'README.md is stale: run python tools/readme.py')
        sys.exit(0 if ok else 1)
    readme.write_text(out)
    print(f'wrote {readme}')
