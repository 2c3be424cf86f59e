"""configs/: every full-size LightningCLI config builds the reference-size model with the reference schedule, and its
smoke twin (`--config configs/X.yaml --config configs/smoke/X.yaml`) trains end to end through `fj fit` on real or
simulated files in the config's own data format, writing a checkpoint whose weights moved."""

import shutil
from pathlib import Path

import pytest
import torch

from foundation_jets.cli import fj_cli_class, main
from foundation_jets.core import seed_everything, shared_data_dir

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / 'configs'
NAMES = sorted(p.stem for p in CONFIGS.glob('*.yaml'))


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "Input files of each pipeline, in its on-disk format: JetClass ROOT, token shards, PILArNet-M, hit shards."
    from foundation_jets.data.features import omnijet_spec
    from foundation_jets.data.jets import jetclass_npy_to_root, load_jetclass
    from foundation_jets.data.modules import write_h5_shard
    from foundation_jets.simulate.lartpc import write_lartpc
    from foundation_jets.simulate.tracks import compact_barrel2d, simulate_barrel2d
    from foundation_jets.tokenize.shards import tokenize_jets, tokenizer_bytes, write_token_shard
    from foundation_jets.tokenize.tokenizers import VQVAETokenizer

    d = tmp_path_factory.mktemp('config_data')
    root = jetclass_npy_to_root(shared_data_dir() / 'jetclass_500', d / 'jets_train.root')
    shutil.copy(root, d / 'jets_val.root')
    seed_everything(0)
    spec = omnijet_spec()
    tok = VQVAETokenizer(dim=16, num_heads=2, num_layers=1, num_codes=32).eval()
    jets = load_jetclass(root)
    codes, mask = tokenize_jets(tok, spec, jets, device='cpu')
    shard = write_token_shard(
        d / 'tokens.h5', codes[:, :64], mask[:, :64], jets.labels, tokenizer_bytes(tok, spec), spec
    )
    lartpc = [str(write_lartpc(d / f'lartpc_{s}.h5', 4, seed=i)) for i, s in enumerate(('train', 'val'))]
    hits = [
        str(write_h5_shard(d / f'hits_{s}.h5', compact_barrel2d(simulate_barrel2d(8, seed=i))))
        for i, s in enumerate(('train', 'val'))
    ]
    from foundation_jets.data.detectors import ADC2021_FEATURES, load_adc2021, write_adc2021_h5
    from foundation_jets.data.features import adc2021_sets, adc2021_spec
    from foundation_jets.core import data_dir

    background = load_adc2021(data_dir() / 'l1' / 'background.h5', features=ADC2021_FEATURES).x.numpy()
    l1 = [str(write_adc2021_h5(d / f'l1_{s}.h5', background[i::2])) for i, s in enumerate(('train', 'val'))]
    l1_spec = d / 'adc2021_spec.json'
    l1_spec.write_text(adc2021_spec().fit(adc2021_sets(background[::2])).to_json())
    jet_files = [f'--data.train_files=[{root}]', f"--data.val_files=[{d / 'jets_val.root'}]"]
    return {
        'part_jetclass': jet_files,
        'tokenizer_jetclass': jet_files,
        'gpt_jetclass': [f'--data.shards=[{shard}]'],
        'polarmae_pilarnet': [f'--data.train_files=[{lartpc[0]}]', f'--data.val_files=[{lartpc[1]}]'],
        'jepa_tracking': [f'--data.train_files=[{hits[0]}]', f'--data.val_files=[{hits[1]}]'],
        'l1_events': [
            f'--data.train_files=[{l1[0]}]',
            f'--data.val_files=[{l1[1]}]',
            f'--model.init_args.spec={l1_spec}',
        ],
    }


def test_every_config_has_a_smoke_twin_and_data():
    assert NAMES == sorted(p.stem for p in (CONFIGS / 'smoke').glob('*.yaml'))
    assert len(NAMES) >= 5


def build(name, extra, tmp_path):
    "The objects of a config, without running it (LightningCLI with run=False)."
    args = ['--config', str(CONFIGS / f'{name}.yaml'), *extra, f'--trainer.default_root_dir={tmp_path}']
    return fj_cli_class()(args=args, run=False)


# the reference sizes and schedules, from shared/reference (numbers written out, not read from our defaults)
REFERENCE = {
    'part_jetclass': lambda c: (
        len(c.model.model.backbone.blocks) == 8
        and c.model.model.backbone.dim == 128
        and c.trainer.max_steps == 1_000_000
        and c.datamodule.batch_size == 512
        and c.model.hparams.optimizer == 'ranger'
        and abs(n_params(c.model.model) - 2.13e6) < 0.02e6
    ),
    'tokenizer_jetclass': lambda c: (
        c.model.tokenizer.quantizer.num_codes == 8192
        and c.model.tokenizer.config['latent_dim'] == 4
        and c.model.tokenizer.config['num_layers'] == 4
        and c.datamodule.batch_size == 512
        and c.trainer.gradient_clip_val == 5.0
    ),
    'gpt_jetclass': lambda c: (
        c.model.model.config['num_layers'] == 3
        and c.model.model.config['dim'] == 256
        and c.model.model.config['vocab_size'] == 8194
        and c.datamodule.batch_size == 256
    ),
    'polarmae_pilarnet': lambda c: (
        abs(n_params(c.model.model) - 29.6e6) < 0.3e6
        and c.trainer.max_steps == 500_000
        and c.model.hparams.warmup_steps == 12_500
        and c.model.hparams.lr == 1e-4
    ),
    'l1_events': lambda c: (
        len(c.model.backbone.blocks) == 8
        and c.model.backbone.dim == 128
        and c.model.fraction == 0.3
        and c.datamodule.batch_size == 512
        and c.trainer.max_epochs == 50
    ),
    'jepa_tracking': lambda c: (
        c.model.hparams.d_embedding == 32 and c.model.hparams.ema_momentum == 0.999 and c.datamodule.batch_size == 200
    ),
}


@pytest.mark.parametrize('name', NAMES)
def test_full_config_has_the_reference_size(name, files, tmp_path):
    cli = build(name, files[name], tmp_path)
    assert REFERENCE[name](cli), name


@pytest.mark.parametrize('name', NAMES)
def test_smoke_twin_trains_through_fj_fit(name, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smoke = ['--config', str(CONFIGS / 'smoke' / f'{name}.yaml'), *files[name], '--trainer.default_root_dir=run']
    init = build(name, ['--config', str(CONFIGS / 'smoke' / f'{name}.yaml'), *files[name]], tmp_path / 'init')
    seed_everything(init.config.seed_everything)  # the weights `fj fit` starts from
    init = build(name, ['--config', str(CONFIGS / 'smoke' / f'{name}.yaml'), *files[name]], tmp_path / 'init')
    assert main(['fit', '--config', str(CONFIGS / f'{name}.yaml'), *smoke]) == 0
    ck = torch.load(tmp_path / 'run' / 'checkpoints' / 'last.ckpt', weights_only=False)
    assert ck['global_step'] >= 3
    state = ck['state_dict']
    start = init.model.state_dict()
    float_keys = [k for k in state if state[k].is_floating_point() and k in start and 'running' not in k]
    moved = max((state[k].float() - start[k].float()).abs().max().item() for k in float_keys)
    assert moved > 1e-4, name
