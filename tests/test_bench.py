"""The benchmark and study scripts run end to end in their quick modes and write JSON that keeps its promises
(no TPR below the 1/N_bkg floor, a power-law fit per timed operation), so they do not rot between full runs; and
`make bench`'s driver (bench/run_all.py) stamps each result with its provenance and summarises the result files."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ('Ato4l', 'leptoquark', 'hToTauTau', 'hChToTauNu')


def run_script(script: str, out: Path, *args: str) -> str:
    cmd = [sys.executable, str(ROOT / 'bench' / script), *args, '--out', str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_l1_anomaly_smoke_respects_the_floor(tmp_path):
    out = tmp_path / 'l1.json'
    stdout = run_script('l1_anomaly.py', out, '--smoke', '--threads', '1')
    d = json.loads(out.read_text())
    n_b = d['floor']['n_background_test']
    assert n_b == d['events']['background'] == 1000
    assert 'done-when' in stdout
    needed = {'flat AE (ADC2021)', 'masked ET leave-one-out pT error', 'untrained ET leave-one-out pT error'}
    assert needed <= set(d['results'])
    for score, per_signal in d['results'].items():
        assert set(per_signal) == set(SIGNALS), score
        for signal, m in per_signal.items():
            assert 0.0 <= m['auc'] <= 1.0, (score, signal)
            for row in m['at_fpr']:
                below = row['fpr'] < 1 / n_b
                assert (row['tpr'] is None) == below, (score, signal, row)
                assert row['status'] == ('below floor' if below else 'ok'), (score, signal, row)
    assert set(d['verdict']) == set(SIGNALS)
    assert d['wins'] == sum(v['beats_baseline'] for v in d['verdict'].values())
    trigger = d['extra']['trigger']
    assert trigger['parameters'] == 2401 and trigger['flops_per_event'] == 4704
    assert -1.0 <= trigger['spearman_background_test'] <= 1.0


def test_points_quick_fits_a_power_law(tmp_path):
    out = tmp_path / 'points.json'
    run_script('bench_points.py', out, '--quick')
    d = json.loads(out.read_text())
    rows = [r for r in d['rows'] if r['batch'] == 1]
    sizes = [r['points'] for r in rows]
    assert sizes == sorted(sizes) and len(sizes) >= 3
    groups = [r['groups_per_event'][0] for r in rows]
    assert groups == sorted(groups) and groups[0] > 0  # more points, more groups
    for name, fit in d['power_law']['batch1'].items():
        assert math.isfinite(fit['b']) and fit['a'] > 0, name
        assert all(r[name] > 0 for r in rows), name
    assert d['goal_met'] == (d['power_law']['batch1']['group_events_s']['b'] <= d['goal_b_max'])


def test_mae_pretrain_quick_reports_every_row(tmp_path):
    out = tmp_path / 'mae.json'
    run_script('bench_mae.py', out, '--quick')
    d = json.loads(out.read_text())
    assert d['rows'], 'no rows'
    for row in d['rows']:
        assert row['events_per_s'] > 0 and math.isfinite(row['events_per_s']), row
        assert 0.0 < row['tokenize_fraction'] < 1.0, row
        assert row['tokens_per_event'] > 0 and row['peak_mib'] >= 0, row
    points = sorted({r['points'] for r in d['rows']})
    tokens = [max(r['tokens_per_event'] for r in d['rows'] if r['points'] == p) for p in points]
    assert tokens == sorted(tokens)  # more points, at least as many tokens (up to the context cap)


def test_jepa_pretrain_quick_runs_in_bounded_memory(tmp_path):
    out = tmp_path / 'jepa.json'
    run_script('bench_jepa.py', out, '--quick')
    d = json.loads(out.read_text())
    rows = d['rows']
    assert {r['batch'] for r in rows} == {1, 2} and len(rows) == 4
    for r in rows:
        assert r['events_per_s'] > 0 and r['peak_mib'] > 0, r
        assert r['events_used'] + r['events_skipped'] == r['batch'], r
    big = [r for r in rows if r['hits_per_event'] > 15_000]
    assert all(r['hits_beyond_max_hits'] > 0 for r in big)  # the cap is exercised, and counted
    for r in big:  # far below one block of whole-event attention logits (N^2 x 4 heads x 4 bytes)
        assert r['peak_mib'] * 2**20 < 0.05 * r['hits_per_event'] ** 2 * 16 * r['batch']


def test_run_all_stamps_provenance_and_summarises(tmp_path):
    cmd = [sys.executable, str(ROOT / 'bench' / 'run_all.py'), '--only', 'simulate_detectors', '--results', tmp_path]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads((tmp_path / 'simulate_detectors_quick.json').read_text())
    prov = result['provenance']
    assert prov['returncode'] == 0 and prov['device'] == 'cpu' and prov['wall_s'] > 0
    assert prov['versions']['torch'] and prov['versions']['foundation_jets']
    assert len(prov['load_average_start']) == 3 and prov['date_utc'].startswith('20')
    rate = result['results'][0]['generate_events_per_s']  # the LArTPC row
    summary = json.loads((tmp_path / 'summary_quick.json').read_text())
    row = next(x for x in summary['rows'] if x['what'].startswith('simulation (LArTPC)'))
    assert row['value'] == f'{rate:.1f}'
    assert f'{rate:.1f}' in r.stdout  # the printed table shows it
    missing = next(x for x in summary['rows'] if x['what'].startswith('tokenization'))
    assert missing['value'] == 'n/a'  # a benchmark that did not run is n/a, not a stale number


def test_jepa_probe_quick_compares_each_seed_with_its_own_init(tmp_path):
    out = tmp_path / 'jepa_probe.json'
    stdout = run_script('jepa_probe.py', out, '--quick')
    d = json.loads(out.read_text())
    rows = d['rows']
    assert [r['seed'] for r in rows] == [0, 1]
    for r in rows:
        assert math.isclose(r['auc_margin'], r['pretrained']['auc'] - r['random_init']['auc'], abs_tol=1e-12)
        assert 0.0 <= r['pretrained']['auc'] <= 1.0 and 0.0 <= r['random_init']['auc'] <= 1.0
        assert r['last_validation']['embedding_std_mean'] > 0  # the collapse monitors were logged
        assert r['pretrained'] != r['random_init']  # the baseline is the network before training, not a copy after
    assert rows[0]['random_init'] != rows[1]['random_init']  # each seed has its own initialisation
    margins = [r['auc_margin'] for r in rows]
    assert math.isclose(d['summary']['auc_margin']['mean'], sum(margins) / 2, abs_tol=1e-12)
    assert d['summary']['seeds_won'] == sum(m > 0 for m in margins)
    assert 'seeds where the pretrained probe wins' in stdout


def test_throughput_flops_match_the_closed_form_of_a_gpt_step():
    "The FLOPs behind bench_throughput's achieved FLOP/s and MFU, for one GPT training step, counted by hand."
    sys.path.insert(0, str(ROOT / 'bench'))
    import torch
    from bench_throughput import adamw_step, step_rate
    from foundation_jets.models.gpt import GPTLanguageModel

    vocab, dim, heads, layers, batch, length = 64, 32, 4, 2, 4, 17
    torch.manual_seed(0)
    model = GPTLanguageModel(vocab, dim, heads, layers, max_len=32)
    tokens = torch.randint(0, vocab, (batch, length))
    cpu = torch.device('cpu')
    rate = step_rate(adamw_step(model, lambda: model.loss(tokens), cpu), batch, 1, cpu)
    t = length - 1  # the loss reads all but the last token
    # per token and layer: q, k, v, out (4 dim^2) and the MLP (2 * 4 dim^2) multiply-accumulates; the head: vocab dim
    dense = 2 * batch * t * (layers * 12 * dim * dim + vocab * dim)
    attention = 2 * 2 * batch * layers * t * t * dim  # Q K^T and A V over the full T x T (the causal half not skipped)
    # backward: 2x forward for the dense layers; torch's attention-backward formula counts five matmuls (it recomputes
    # Q K^T as flash attention does), 2.5x forward
    assert rate['flops_per_step'] == 3 * dense + 3.5 * attention
    assert rate['achieved_flops_per_s'] == rate['flops_per_step'] / rate['seconds_per_step']


def test_mae_svm_probe_quick_compares_with_its_own_init(tmp_path):
    "The MAE SVM-probe study: margins are the pretrained minus the same seed's init, every probe row is an F1 set."
    out = tmp_path / 'mae_svm.json'
    args = ('--quick', '--seed', '1', '--random-seeds', '2', '--supervised-steps', '20', '--threads', '1')
    run_script('mae_svm_probe.py', out, *args)
    d = json.loads(out.read_text())
    assert d['config']['seed'] == 1
    r = d['results']['polarmae']
    rows = [r['pretrained'], r['supervised'], *r['random_init'].values()]
    for row in rows:
        f1 = [row[f'f1_{c}'] for c in ('shower', 'track', 'michel', 'delta')]
        assert all(0.0 <= f <= 1.0 for f in f1), row
        assert math.isclose(row['mean_f1'], sum(f1) / 4, abs_tol=1e-9), row
    init, other = r['random_init']['seed0'], r['random_init']['seed1']
    assert init != other  # the second random init is another network
    assert math.isclose(r['difference_mean_f1'], r['pretrained']['mean_f1'] - init['mean_f1'], abs_tol=1e-12)
    best = max(init['mean_f1'], other['mean_f1'])
    assert math.isclose(r['difference_vs_best_random'], r['pretrained']['mean_f1'] - best, abs_tol=1e-12)
    assert r['claim_holds'] == (r['difference_mean_f1'] >= 0.10)
    assert r['supervised']['steps'] == 20 and math.isfinite(r['supervised']['last_loss'])
    assert r['supervised'] != init  # the supervised copy trained
    assert r['masked_loss_after']['loss'] < r['masked_loss_before']['loss']
