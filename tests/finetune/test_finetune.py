"""Fine-tuning (`ser finetune`) on tiny wav2vec2 / HuBERT / WavLM models saved with save_pretrained
and the synthetic corpus: what trains and what stays frozen, batching without padding for
group-norm models, the conv cache, the run directory, resume after SIGKILL, reloading the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ser.data.corpora import CORPORA, prepare_corpus
from ser.data.workspace import Workspace
from ser.errors import OutputBusyError, UserInputError
from ser.features.audio import load_audio
from ser.features.cache import CacheReader
from ser.training import run_dir as files
from ser.finetune.config import FinetuneConfig, FinetuneRecipe, lr_factor
from ser.finetune.conv_cache import build_conv_cache
from ser.finetune.data import load_finetune_data, resolve_batching
from ser.finetune.loop import finetune_fold
from ser.finetune.model import build_finetune_model, load_speech_backbone
from ser.finetune.run import load_finetuned, run_finetune
from ser.training.protocol import protocol_folds

REPO = Path(__file__).resolve().parents[2]
TINY_CONV = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
OPTIONS = dict(epochs=1, batch_size=4, warmup_epochs=1, lr=1e-3, backbone_lr=1e-3, max_seconds=1.5,
               dev_fraction=0.34, seed=0)
CLI_OPTIONS = ["--head", "linear", "--fold", "1", "--epochs", "2", "--batch-size", "4", "--warmup-epochs", "1",
               "--lr", "1e-3", "--backbone-lr", "1e-3", "--max-seconds", "1.5", "--dev-fraction", "0.34",
               "--device", "cpu"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """24 synthetic utterances of 1–2.5 s (2 sessions) and three tiny group-norm models."""
    from transformers import AutoModel, HubertConfig, Wav2Vec2Config, WavLMConfig

    root = tmp_path_factory.mktemp("ft")
    ws = Workspace(root)
    prepare_corpus(CORPORA.get("synthetic"), root / "audio", ws.manifest_for("synthetic"),
                   {"speakers": 2, "sessions": 2, "per_class": 3})
    for name, config_class in (("wavlm", WavLMConfig), ("hubert", HubertConfig), ("wav2vec2", Wav2Vec2Config)):
        torch.manual_seed(1)
        AutoModel.from_config(config_class(**TINY_CONV)).save_pretrained(root / f"tiny-{name}")
    return ws


def config_for(ws: Workspace, family: str, head: str = "linear", **changes) -> FinetuneConfig:
    return FinetuneConfig.create(str(ws.root / f"tiny-{family}"), head, **{**OPTIONS, **changes})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return dict(AutoModel.from_pretrained(folder).state_dict())


@pytest.fixture(scope="module")
def wavlm_run(workspace):
    """Two epochs of fold 1 with the tiny WavLM (raw audio, crop batching)."""
    run_dir, results = run_finetune(workspace.root, config_for(workspace, "wavlm", epochs=2), "1", device="cpu")
    return run_dir / "fold1", results["fold1"]


def _changed(before: dict, after: dict, prefix: str) -> list[bool]:
    names = [name for name in before if name.startswith(prefix) and before[name].is_floating_point()]
    assert names, prefix
    return [not torch.equal(before[name], after[name]) for name in names]


def _check_trained_transformer_frozen_cnn(workspace, fold_dir: Path, family: str, frozen_layers: int = 0) -> None:
    before, after = weights(workspace.root / f"tiny-{family}"), weights(fold_dir / "backbone")
    assert not any(_changed(before, after, "feature_extractor."))  # the CNN encoder never changes
    assert all(_changed(before, after, "encoder.layers.1.feed_forward."))  # the transformer was trained
    if frozen_layers:  # --freeze-layers 1: the input projection and layer 0 stay as they were
        assert not any(_changed(before, after, "encoder.layers.0."))
        assert not any(_changed(before, after, "feature_projection."))
    else:
        assert any(_changed(before, after, "feature_projection."))


def test_wavlm_epoch_trains_transformer_not_cnn_and_writes_the_run_dir(workspace, wavlm_run):
    fold_dir, metrics = wavlm_run
    _check_trained_transformer_frozen_cnn(workspace, fold_dir, "wavlm")
    for name in (files.CONFIG, files.METRICS, files.HISTORY, files.PREDICTIONS, files.LAYER_WEIGHTS, files.MODEL):
        assert (fold_dir / name).is_file(), name
    assert not (fold_dir / files.CHECKPOINT).exists()
    config = json.loads((fold_dir / files.CONFIG).read_text())
    assert config["setting"] == "finetune" and config["backbone_dir"] == "backbone"
    assert config["batching_resolved"] == "crop"  # group norm: never padded
    assert len(json.loads((fold_dir / files.LAYER_WEIGHTS).read_text())["weights"]) == 3  # L+1 hidden states
    assert set(metrics) == {"test", "dev", "best_epoch", "test_last"}  # the optimistic number is opt-in
    assert "test_ua" not in pd.read_csv(fold_dir / files.HISTORY).columns  # test is scored twice, not per epoch
    assert config["dev_split"] == "random (1 training speaker < 4)" and config["record_test_curve"] is False


@pytest.mark.parametrize("family, changes", [("hubert", {"batching": "accumulate"}), ("wav2vec2", {"freeze_layers": 1})])
def test_epoch_trains_transformer_not_cnn(workspace, family, changes):
    run_dir, _ = run_finetune(workspace.root, config_for(workspace, family, **changes), "1", device="cpu")
    _check_trained_transformer_frozen_cnn(workspace, run_dir / "fold1", family, changes.get("freeze_layers", 0))


def test_gradient_checkpointing_gives_the_same_gradients(workspace):
    pristine = load_speech_backbone(str(workspace.root / "tiny-wav2vec2"), False, False, "cpu", 0.0)
    data = load_finetune_data(workspace.manifest_for("synthetic"), "categorical", pristine.num_frames, 0.5)
    x, lengths = data.inputs(np.arange(4), build_finetune_model(config_for(workspace, "wav2vec2"), pristine, 4), crop=True)
    gradients = []
    for checkpointing in (False, True):
        model = build_finetune_model(config_for(workspace, "wav2vec2", gradient_checkpointing=checkpointing), pristine, 4)
        assert model.backbone.encoder.layers[0].gradient_checkpointing == checkpointing
        model.train()
        torch.manual_seed(0)  # the same dropout masks
        torch.nn.functional.cross_entropy(model(x, lengths), data.targets[:4]).backward()
        gradients.append(model.backbone.encoder.layers[0].attention.q_proj.weight.grad)
    assert gradients[0].abs().sum() > 0
    torch.testing.assert_close(gradients[0], gradients[1])


@pytest.mark.parametrize("batching", ["crop", "accumulate"])
def test_group_norm_models_never_see_padding(workspace, tmp_path, batching):
    config = config_for(workspace, "hubert", batching=batching)
    pristine = load_speech_backbone(config.model, False, False, "cpu", config.recipe.layerdrop)
    data = load_finetune_data(workspace.manifest_for("synthetic"), "categorical", pristine.num_frames, None)
    model = build_finetune_model(config, pristine, data.task.num_outputs)
    seen = []

    def check(module, args):
        waves, lengths = args[0], args[1]
        seen.append((waves.shape[0], module.training))
        assert bool((lengths == waves.shape[1]).all()), "a wave was padded"
        if batching == "accumulate" or not module.training:
            assert waves.shape[0] == 1  # whole utterances, one at a time

    model.register_forward_pre_hook(check)
    fold = protocol_folds(config, data)[0]
    finetune_fold(config, data, fold, tmp_path, model, torch.device("cpu"))
    assert any(size > 1 for size, training in seen if training) == (batching == "crop")
    assert len({len(load_audio(r)) for r in data.records}) > 1  # lengths do differ: cropping happened
    with pytest.raises(UserInputError, match="see padding"):
        resolve_batching("pad", False, model)


@pytest.mark.parametrize("family", ["wavlm", "hubert", "wav2vec2"])
def test_padding_the_cached_cnn_output_leaves_valid_frames_unchanged(workspace, family):
    """Why --conv-cache may pad: the group norm already ran on each utterance alone, and the mask
    keeps padded frames out of the transformer."""
    pristine = load_speech_backbone(str(workspace.root / f"tiny-{family}"), False, False, "cpu", None)
    model = build_finetune_model(config_for(workspace, family), pristine, 4).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        conv = model.conv_features(torch.randn(2, 16000))  # (2, T, C)
        T, short = conv.shape[1], conv.shape[1] - 17
        alone = model.hidden_states(conv[1:, :short].clone(), torch.tensor([short]))  # (1, L, short, D)
        padded = conv.clone()
        padded[1, short:] = 0
        batched = model.hidden_states(padded, torch.tensor([T, short]))  # (2, L, T, D)
    torch.testing.assert_close(batched[1, :, :short], alone[0], atol=1e-5, rtol=1e-5)
    assert resolve_batching("auto", True, model) == "pad"


def test_hidden_states_equal_extraction_and_layerdrop_keeps_their_count(workspace):
    pristine = load_speech_backbone(str(workspace.root / "tiny-wavlm"), False, False, "cpu", 0.5)
    config = config_for(workspace, "wavlm")
    model = build_finetune_model(config, pristine, 4)
    wave = load_audio(load_finetune_data(workspace.manifest_for("synthetic"), "categorical",
                                         pristine.num_frames, None).records[0])
    expected = pristine.forward([wave])[0]  # (L, T, D), what extraction caches
    model.eval()
    with torch.no_grad():
        conv = model.conv_features(torch.from_numpy(model.prepare_wave(wave))[None])
        states = model.hidden_states(conv, torch.tensor([conv.shape[1]]))[0]
    np.testing.assert_allclose(states.numpy(), expected, atol=1e-5)
    model.train()  # LayerDrop 0.5: layers get skipped, the count stays L+1
    runs = [model.hidden_states(conv, torch.tensor([conv.shape[1]])).detach() for _ in range(6)]
    assert {run.shape[1] for run in runs} == {3}
    assert not torch.equal(runs[0], runs[1])  # dropout / LayerDrop act in training only


def test_load_finetuned_reproduces_the_runs_predictions(wavlm_run):
    fold_dir, _ = wavlm_run
    backbone, head, config = load_finetuned(fold_dir)
    predictions = pd.read_csv(fold_dir / files.PREDICTIONS)
    manifest = Workspace(fold_dir.parents[4]).manifest_for(config["corpus"])
    data = load_finetune_data(manifest, "categorical", backbone.num_frames, config["max_seconds"])
    records = {record.id: record for record in data.records}
    labels = config["task_state"]["labels"]
    with torch.no_grad():
        for _, row in predictions.iterrows():
            states = backbone.forward([load_audio(records[row["id"]], config["max_seconds"])])[0]  # (L, T, D)
            logits = head(torch.from_numpy(states)[None], torch.tensor([states.shape[1]]))
            np.testing.assert_allclose(torch.softmax(logits, 1)[0].numpy(), row[[f"p_{c}" for c in labels]].to_numpy(
                dtype=np.float32), atol=1e-5)


def test_conv_cache_run_matches_raw_audio(workspace):
    """The cached CNN output equals the model's; with equal-length clips the cached run gives the raw run's numbers."""
    raw_dir, raw = run_finetune(workspace.root, config_for(workspace, "wavlm", max_seconds=0.5), "1", device="cpu")
    conv_dir, cached = run_finetune(workspace.root, config_for(workspace, "wavlm", max_seconds=0.5, conv_cache=True),
                                    "1", device="cpu")
    (cache_path,) = (workspace.cache_dir / "synthetic" / "conv").glob("*.h5")
    with CacheReader(cache_path) as reader:
        assert reader.num_layers == 1 and reader.dim == 32 and reader.attrs["source"].endswith("#conv")
        pristine = load_speech_backbone(str(workspace.root / "tiny-wavlm"), False, False, "cpu", None)
        record = load_finetune_data(workspace.manifest_for("synthetic"), "categorical", pristine.num_frames, 0.5).records[0]
        with torch.no_grad():
            conv = pristine.model.feature_extractor(torch.from_numpy(load_audio(record, 0.5))[None]).transpose(1, 2)
        np.testing.assert_allclose(reader.read(record.id)[0], conv[0].numpy(), rtol=2e-3, atol=2e-3)  # fp16
    raw_history, conv_history = (pd.read_csv(d / "fold1" / files.HISTORY) for d in (raw_dir, conv_dir))
    np.testing.assert_allclose(conv_history["train_loss"], raw_history["train_loss"], rtol=1e-3)
    assert cached["fold1"]["test"] == raw["fold1"]["test"]


def test_a_second_run_waits_for_the_conv_cache_another_process_builds(workspace, tmp_path, capfd,
                                                                      held_by_another_process):
    """Two fine-tuning runs of one model started together: the second was refused by the cache's lock."""
    out = tmp_path / "conv.h5"
    holder = held_by_another_process(out, seconds=1.0)
    pristine = load_speech_backbone(str(workspace.root / "tiny-wavlm"), False, False, "cpu", None)
    built = build_conv_cache(workspace.manifest_for("synthetic"), pristine, out, 0.5)
    assert holder.wait(timeout=30) == 0
    assert f"note: waiting for process {holder.pid}, which is writing {out}\n" in capfd.readouterr().err
    with CacheReader(built) as reader:
        assert reader.attrs["source"].endswith("#conv") and len(reader.ids) == 24


def test_config_round_trips_and_names_the_run():
    config = FinetuneConfig.create("wav2vec2-base", "shiftcnn", {"shift_proportion": "1/8"}, schedule="reference",
                                   backbone_lr=5e-4, freeze_layers=2, conv_cache=True)
    assert FinetuneConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.run_name() == "ft-shiftcnn-shift_proportion1_8-blr0.0005-sched-reference-freeze2-conv-s0"
    with pytest.raises(UserInputError, match="unknown schedule"):
        FinetuneConfig.create("wav2vec2-base", "shiftcnn", schedule="cosine-ish")


def test_schedules():
    recipe = FinetuneRecipe()  # paper: warm-up 5 epochs, 100 epochs
    reference = recipe.with_overrides(schedule="reference")
    # the reference counts 700 warm-up steps but advances once per epoch: 0 first, ≈ 7e-5 at the end
    assert lr_factor(reference, step=0, epoch=0, steps_per_epoch=140) == 0
    assert recipe.lr * lr_factor(reference, step=13_999, epoch=99, steps_per_epoch=140) == pytest.approx(7.07e-5, rel=1e-2)
    assert lr_factor(recipe, step=0, epoch=0, steps_per_epoch=140) > 0  # per step: warm-up, flat, decay to 0
    assert lr_factor(recipe, step=699, epoch=4, steps_per_epoch=140) == 1.0
    assert lr_factor(recipe, step=1200, epoch=8, steps_per_epoch=140) == 1.0
    assert lr_factor(recipe, step=13_999, epoch=99, steps_per_epoch=140) == 0.0
    assert 0 < lr_factor(recipe, step=7000, epoch=50, steps_per_epoch=140) < 1


def test_resume_after_sigkill_equals_uninterrupted_and_report_reads_it(workspace, wavlm_run, tmp_path):
    from ser.studies.report import write_report

    fold_dir, uninterrupted = wavlm_run
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "ser.cli", "finetune", "--model", str(workspace.root / "tiny-wavlm"), *CLI_OPTIONS,
               "--workdir", str(workspace.root), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    checkpoint = out / "fold1" / files.CHECKPOINT
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert checkpoint.exists() and not (out / "fold1" / files.METRICS).exists(), f"killed too late: {stderr[-500:]}"

    _, results = run_finetune(workspace.root, config_for(workspace, "wavlm", epochs=2), "1", out=out, device="cpu")
    assert results["fold1"] == uninterrupted  # same seed, same numbers, interruption or not
    assert not checkpoint.exists()
    for name in (files.PREDICTIONS, files.CONFIG, files.LAYER_WEIGHTS):
        assert (out / "fold1" / name).read_text() == (fold_dir / name).read_text(), name
    history = [pd.read_csv(d / files.HISTORY).drop(columns="seconds") for d in (out / "fold1", fold_dir)]
    pd.testing.assert_frame_equal(*history)

    report = write_report(fold_dir.parent, tmp_path / "report")
    assert "linear" in report.read_text()


def test_ser_load_on_a_finetuned_run_reproduces_its_predictions(workspace, wavlm_run):
    """`ser predict`'s path (ser.load → extraction with the tuned backbone saved in the fold → head)
    gives the run's own test predictions; the features pass through the cache's float16."""
    import ser

    fold_dir, _ = wavlm_run
    predictions = pd.read_csv(fold_dir / files.PREDICTIONS, dtype={"id": str})
    manifest = pd.read_csv(workspace.manifest_for("synthetic"), dtype={"id": str}).set_index("id")
    paths = [str((workspace.manifest_for("synthetic").parent / manifest.loc[utt, "path"]).resolve())
             for utt in predictions["id"]]
    recognizer = ser.load(fold_dir, windows=False, device="cpu")
    table = recognizer.predict_many(paths)
    assert list(table["path"]) == paths and not table.attrs["skipped"]
    probabilities = [column for column in predictions.columns if column.startswith("p_")]
    np.testing.assert_allclose(table[probabilities].to_numpy(), predictions[probabilities].to_numpy(), atol=2e-3)
    assert list(table["prediction"]) == list(predictions["prediction"])


def test_finetune_log_tensorboard_records_every_epoch(workspace, tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tracking extra: pip install 'ser[tracking]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, results = run_finetune(workspace.root, config_for(workspace, "wavlm", epochs=2), "1", out=tmp_path / "run",
                                    device="cpu", log="tensorboard")
    events = EventAccumulator(str(run_dir / "fold1" / "tensorboard"))
    events.Reload()
    history = pd.read_csv(run_dir / "fold1" / files.HISTORY)
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2]
    assert [event.value for event in losses] == pytest.approx(history["train_loss"].tolist(), rel=1e-6)
    (final,) = events.Scalars("final/test_ua")
    assert final.value == pytest.approx(results["fold1"]["test"]["ua"])


def test_a_layer_skipped_by_layerdrop_passes_its_input_on_and_every_state_is_recorded(workspace):
    """LayerDrop skipping layer 0 (here every layer) left the recorded input of layer 0 at None and
    torch.stack raised; a skipped layer's output is its input, so every state equals the first."""
    pristine = load_speech_backbone(str(workspace.root / "tiny-wav2vec2"), False, False, "cpu", 0.5)
    model = build_finetune_model(config_for(workspace, "wav2vec2"), pristine, 4)
    model.backbone.config.layerdrop = 1.0  # every layer skipped (the CLI takes [0, 1))
    model.train()
    conv = torch.randn(2, 20, 32)  # (B, T, C)
    states = model.hidden_states(conv, torch.tensor([20, 20]))  # (B, L+1, T, D)
    assert states.shape[:3] == (2, 3, 20)
    for position in range(1, 3):
        assert torch.equal(states[:, position], states[:, 0])


def test_wav2vec2_hidden_states_equal_extraction_in_eval_mode(workspace):
    pristine = load_speech_backbone(str(workspace.root / "tiny-wav2vec2"), False, False, "cpu", 0.5)
    model = build_finetune_model(config_for(workspace, "wav2vec2"), pristine, 4)
    wave = load_audio(load_finetune_data(workspace.manifest_for("synthetic"), "categorical",
                                         pristine.num_frames, None).records[0])
    expected = pristine.forward([wave])[0]  # (L+1, T, D), what `ser extract` caches
    model.eval()
    with torch.no_grad():
        conv = model.conv_features(torch.from_numpy(model.prepare_wave(wave))[None])
        states = model.hidden_states(conv, torch.tensor([conv.shape[1]]))[0]
    np.testing.assert_allclose(states.numpy(), expected, atol=1e-5)


def test_ser_finetune_with_layerdrop_half_trains_three_epochs(workspace, tmp_path):
    """The real CLI on the tiny wav2vec2 at LayerDrop 0.5: layer 0 is skipped in some steps."""
    out = tmp_path / "layerdrop"
    options = [value if previous != "--epochs" else "3" for previous, value in zip(["", *CLI_OPTIONS], CLI_OPTIONS)]
    options += ["--layerdrop", "0.5"]
    command = [sys.executable, "-m", "ser.cli", "finetune", "--model", str(workspace.root / "tiny-wav2vec2"),
               *options, "--workdir", str(workspace.root), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    history = pd.read_csv(out / "fold1" / files.HISTORY)
    assert len(history) == 3 and np.isfinite(history["train_loss"]).all()


def test_a_fold_another_process_is_fine_tuning_is_refused_and_left_alone(workspace, tmp_path, held_by_another_process):
    run = tmp_path / "run"
    pid = held_by_another_process(run / "fold1").pid
    with pytest.raises(OutputBusyError, match=f"{run / 'fold1'} is being written by process {pid} "):
        run_finetune(workspace.root, config_for(workspace, "wavlm"), "1", out=run, device="cpu", log="tensorboard")
    assert not (run / "fold1").exists()
