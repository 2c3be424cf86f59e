"""Training harness: `fj fit` from YAML writes a resumable checkpoint; 2-process DDP equals 1 process;
a run killed mid-training and resumed from `last.ckpt` equals an uninterrupted run. CPU only, tiny models."""

import os
import subprocess
import sys
from pathlib import Path
import pytest
import torch
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from foundation_jets.core import seed_everything
from torch.utils.data import DataLoader, DistributedSampler
from foundation_jets.core import collate_sets
from foundation_jets.data.modules import SetDataset
from foundation_jets.models.deepsets import DeepSets
from foundation_jets.tasks.classifier import SetClassifier, ring_sets
from foundation_jets.data.modules import JetNpyDataModule

ROOT = Path(__file__).resolve().parent.parent
FJ = [sys.executable, '-c', 'import sys; from foundation_jets.cli import main; sys.exit(main())']
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)


def fj(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run(
        FJ + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f'{k}: {m}')


CONFIG = """
trainer: {{max_epochs: {epochs}, default_root_dir: {root}, logger: false, enable_progress_bar: false, enable_model_summary: false}}
model:
  class_path: foundation_jets.tasks.classifier.SetClassifier
  init_args:
    n_classes: 2
    lr: 0.01
    backbone: {{class_path: foundation_jets.models.deepsets.DeepSets, init_args: {{n_features: 7, n_classes: 2, phi_dims: [16, 16], f_dims: [16]}}}}
data:
  class_path: foundation_jets.data.modules.JetNpyDataModule
  init_args: {{classes: [QCD, Tbqq], batch_size: 16}}
"""


def test_fj_fit_writes_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text(CONFIG.format(epochs=2, root=tmp_path))
    r = fj('fit', '--config', cfg, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    last = tmp_path / 'checkpoints' / 'last.ckpt'
    ck = torch.load(last, weights_only=True)
    steps_per_epoch = -(-68 // 16)  # 68 training jets (60% of 48 QCD + 65 Tbqq), batches of 16
    assert ck['epoch'] == 1 and ck['global_step'] == 2 * steps_per_epoch
    assert ck['state_dict']['backbone.f.2.weight'].shape == (2, 16)
    # resume: two more epochs on top of the last checkpoint (in-process `main`, to spare a Lightning import)
    from foundation_jets.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(['fit', '--config', str(cfg), '--trainer.max_epochs', '4', '--ckpt_path', 'last']) == 0
    ck2 = torch.load(last, weights_only=True)
    assert ck2['epoch'] == 3 and ck2['global_step'] == 4 * steps_per_epoch
    # and the checkpoint evaluates through `fj test`
    capsys.readouterr()
    assert main(['test', '--config', str(cfg), '--ckpt_path', str(last)]) == 0
    assert 'test/auc' in capsys.readouterr().out


def _ddp_task():
    seed_everything(0)
    return SetClassifier(
        DeepSets(n_features=2, n_classes=2, phi_dims=[8, 8], f_dims=[8]),
        lr=0.2,
        weight_decay=0.0,
        optimizer='sgd',
        scheduler=None,
    )


def test_ddp_two_processes_equal_one_process(monkeypatch):
    # Plain SGD. Under DDP Lightning gives each rank a DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED):
    # rank r reads perm[r::2] of the epoch's permutation. The single process reads the same permutation
    # (a DistributedSampler with one replica) in batches of 16, so every step sees the same 16 sets, and
    # DDP averages the two per-rank mean gradients into the single-process mean gradient.
    monkeypatch.setenv('PL_GLOBAL_SEED', '0')
    ds = SetDataset(ring_sets(64, seed=3))
    single = _ddp_task()
    init = {k: v.clone() for k, v in single.state_dict().items()}
    order = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    L.Trainer(max_epochs=3, accelerator='cpu', devices=1, enable_checkpointing=False, **QUIET).fit(
        single, DataLoader(ds, batch_size=16, sampler=order, collate_fn=collate_sets)
    )
    ddp = _ddp_task()
    assert_same_weights(ddp.state_dict(), init, atol=0)
    L.Trainer(
        max_epochs=3, accelerator='cpu', devices=2, strategy='ddp_spawn', enable_checkpointing=False, **QUIET
    ).fit(ddp, DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate_sets))
    moved = max((single.state_dict()[k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # the run trained
    assert_same_weights(ddp.state_dict(), single.state_dict(), atol=1e-6)


class Crash(L.Callback):
    "Kill the run after `step` optimizer steps (mid-epoch), as a node failure would."

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise RuntimeError('simulated crash')


def _resumable_run(ckpt_dir, epochs=4, callbacks=(), ckpt_path=None):
    seed_everything(0)
    task = SetClassifier(DeepSets(n_features=7, n_classes=2, phi_dims=[16], f_dims=[16]), lr=3e-3, warmup_steps=3)
    dm = JetNpyDataModule(classes=['QCD', 'Tbqq'], batch_size=16, shuffle=True, seed=1)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator='cpu',
        deterministic=True,
        default_root_dir=ckpt_dir,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True), *callbacks],
        **QUIET,
    )
    trainer.fit(task, dm, ckpt_path=ckpt_path)
    return task


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    full = _resumable_run(tmp_path / 'full')
    with pytest.raises(RuntimeError, match='simulated crash'):
        _resumable_run(tmp_path / 'killed', callbacks=[Crash(step=12)])  # 5 steps per epoch: killed in epoch 3
    ck = torch.load(tmp_path / 'killed' / 'last.ckpt', weights_only=True)
    assert ck['global_step'] == 10  # the last completed epoch
    resumed = _resumable_run(tmp_path / 'killed', ckpt_path='last')
    assert_same_weights(resumed.state_dict(), full.state_dict(), atol=1e-6)
    final = torch.load(tmp_path / 'killed' / 'last.ckpt', weights_only=True)['state_dict']
    assert_same_weights(final, full.state_dict(), atol=1e-6)
