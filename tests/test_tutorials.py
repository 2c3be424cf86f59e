"""Every tutorial in tutorial/ runs end to end in smoke mode through papermill, with its
`parameters` cell overridden (`smoke=True`, `out_dir` a fresh folder)."""

import json
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / 'tutorial').glob('[0-9]*.ipynb'))


def test_every_tutorial_has_a_parameters_cell():
    for nb in TUTORIALS:
        cells = json.loads(nb.read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, f'{nb.name}: expected exactly one cell tagged "parameters", found {len(tagged)}'
        assert 'smoke' in ''.join(tagged[0]['source']), f'{nb.name}: the parameters cell must define `smoke`'


@pytest.mark.parametrize('nb', TUTORIALS, ids=lambda p: p.name)
def test_tutorial_smoke(nb, tmp_path):
    import papermill as pm

    out = tmp_path / nb.name
    pm.execute_notebook(
        str(nb),
        str(out),
        parameters={'smoke': True, 'out_dir': str(tmp_path / 'run')},
        kernel_name='python3',
        cwd=str(nb.parent),
        progress_bar=False,
    )
    assert (tmp_path / 'run' / 'metrics.json').exists(), 'a tutorial writes metrics.json into out_dir'
