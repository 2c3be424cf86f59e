"""Every tutorial in tutorial/ runs end to end in smoke mode through papermill, with its
`parameters` cell overridden (`smoke=True`, `out_dir` a fresh folder)."""

import json
import re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / 'tutorial').glob('[0-9]*.ipynb'))
# the key figures each tutorial saves as PNG next to its metrics.json (issue 17, item 5)
KEY_FIGURES = {
    '00_top_tagging.ipynb': ['jet_images.png', 'training_curves.png', 'roc.png', 'scores.png'],
    '01_tokenization.ipynb': ['training_loss.png', 'jetclass_mass_tau32.png'],
    '02_generation.ipynb': ['generated_vs_reference.png', 'conditional_mass.png'],
    '03_transfer.ipynb': ['pretraining_loss.png', 'transfer_sweep.png', 'roc.png'],
    '04_particle_transformer.ipynb': ['auc_vs_n.png', 'roc.png'],
    '05_masked_point_modelling.ipynb': [
        'event.png',
        'pretraining_loss.png',
        'reconstruction.png',
        'segmentation.png',
    ],
    '06_jepa.ipynb': ['event.png', 'pretraining.png', 'training_curves.png', 'probe.png', 'trackml_3d.png'],
    '07_l1_anomaly.ipynb': ['score_distributions.png', 'roc_Ato4l.png'],
    '08_pretraining.ipynb': ['benchmark_auc_vs_n.png'],  # drawn from bench/results/pretraining_small_n.json
}


def check_figures(folder: Path, names: list):
    "Each named figure exists in `folder` and is a readable, non-blank image."
    import matplotlib.image

    for name in names:
        path = folder / name
        assert path.is_file(), f'{name} was not saved next to metrics.json in {folder}'
        image = matplotlib.image.imread(path)  # raises on a file that is not a valid PNG
        assert image.ndim == 3 and min(image.shape[:2]) > 100, f'{name}: image shape {image.shape}'
        assert image.std() > 0.01, f'{name}: a blank image'


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
    check_figures(tmp_path / 'run', KEY_FIGURES.get(nb.name, []))


def test_every_tutorial_lists_its_key_figures():
    assert sorted(KEY_FIGURES) == sorted(nb.name for nb in TUTORIALS)


# three-decimal numbers a tutorial's closing summary quotes from elsewhere: benchmark results in bench/results,
# the reference papers, other runs of the tutorial, or sums of printed numbers; every other one must be printed
QUOTED_ELSEWHERE = {
    '03_transfer.ipynb': {'-0.003', '0.007', '0.015', '0.045', '0.050'},
    '04_particle_transformer.ipynb': {'0.893', '0.967', '0.974', '0.978', '0.983'},
    '05_masked_point_modelling.ipynb': {'0.019', '0.073', '0.092', '0.687', '0.719', '0.732'},
    '06_jepa.ipynb': {'-0.028', '0.063', '0.068', '0.146'},
    '07_l1_anomaly.ipynb': {'0.755', '0.813', '0.839', '0.841', '0.852', '0.867', '0.917', '0.928', '0.930', '0.949'},
}
DECIMAL = re.compile(r'(?<![\d.])-?\d+\.\d+(?![\d.])')


def printed_numbers(cells: list) -> list:
    "Every decimal number in the notebook's saved text outputs (streams, text/plain, markdown and HTML displays)."
    numbers = []
    for cell in cells:
        for out in cell.get('outputs', []):
            text = ''.join(out.get('text', ''))
            text += ''.join(''.join(v) for k, v in out.get('data', {}).items() if k.startswith('text/'))
            numbers += [float(s) for s in DECIMAL.findall(text)]
    return numbers


@pytest.mark.parametrize('nb', TUTORIALS, ids=lambda p: p.name)
def test_smoke_summary_quotes_the_committed_outputs(nb):
    """A closing summary's three-decimal numbers are what the committed run printed (to their rounding), so a rerun
    that changes the outputs cannot leave stale numbers in the text."""
    cells = json.loads(nb.read_text())['cells']
    summary = [''.join(c['source']) for c in cells if c['cell_type'] == 'markdown'][-1]
    printed = printed_numbers(cells)
    quoted = QUOTED_ELSEWHERE.get(nb.name, set())
    stale = []
    for s in DECIMAL.findall(summary):
        if len(s.split('.')[1]) != 3 or s in quoted:
            continue
        if not any(abs(float(s) - p) <= 0.0005 + 1e-9 for p in printed):
            stale.append(s)
    assert not stale, f'{nb.name}: the summary quotes {stale}, which no output of the committed run prints'
    unused = sorted(q for q in quoted if q not in DECIMAL.findall(summary))
    assert not unused, f'{nb.name}: QUOTED_ELSEWHERE lists {unused}, which the summary no longer quotes'
