"""Execute a tutorial in place with papermill (default parameters, i.e. smoke mode) and keep its outputs,
minus execution metadata, so the committed notebook shows its results.

  python tools/run_tutorial.py tutorial/00_top_tagging.ipynb [-p name value ...]"""

import json
import sys
import tempfile
from pathlib import Path
import papermill as pm


def clean(nb: dict) -> dict:
    nb['metadata'] = {k: v for k, v in nb['metadata'].items() if k in ('kernelspec', 'language_info')}
    nb['metadata'].pop('language_info', None)
    for c in nb['cells']:
        c['metadata'] = {k: v for k, v in c.get('metadata', {}).items() if k == 'tags'}
        if c['cell_type'] == 'code':
            c['execution_count'] = None
            for o in c.get('outputs', []):
                if 'execution_count' in o:
                    o['execution_count'] = None
                o.get('metadata', {}).clear()
    return nb


if __name__ == '__main__':
    src = Path(sys.argv[1])
    args = sys.argv[2:]
    params = {args[i + 1]: eval(args[i + 2]) for i in range(0, len(args), 3) if args[i] == '-p'}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / src.name
        pm.execute_notebook(
            str(src), str(out), parameters=params, kernel_name='python3', cwd=str(src.parent), progress_bar=False
        )
        nb = clean(json.loads(out.read_text()))
    src.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    print(f'executed and saved {src}')
