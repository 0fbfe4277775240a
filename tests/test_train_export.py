"""A short real training run, resume, ONNX export parity, and the EmotionModel API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import FER_CSV
from moodlens.classes import FER2013_CLASSES
from moodlens.classify import EmotionModel, ModelError
from moodlens.cli import main
from moodlens.errors import MoodLensError
from moodlens.training import train as train_module
from moodlens.training.data import FERPLUS_COLUMNS, load_fer2013
from moodlens.training.export import export
from moodlens.training.train import TrainConfig, train

torch = pytest.importorskip("torch")  # the `train` extra


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """moodnet_xs on 500 real faces of two classes that look different (happy, surprise)."""
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(data=str(FER_CSV), out=str(out), model="moodnet_xs", classes="happy,surprise", limit=500,
                      epochs=8, batch_size=50, lr=3e-3, patience=8, seed=1)
    return cfg, train(cfg)


def test_short_training_beats_chance(run):
    cfg, report = run
    recall = [s["recall"] for s in report["per_class"].values()]
    # PublicTest is 68% happy: balanced recall, not accuracy, shows the net learned both classes.
    assert np.mean(recall) > 0.65, report["per_class"]
    assert report["accuracy"] > 0.70


def test_run_folder_has_metrics_plots_and_checkpoints(run):
    cfg, report = run
    out = Path(cfg.out)
    for name in ("best.pt", "last.pt", "config.json", "metrics.csv", "curves.png", "confusion.png", "report.json"):
        assert (out / name).stat().st_size > 0, name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc") and len(rows) == 9
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["per_class"]) == {"happy", "surprise"} and np.array(saved["confusion"]).sum() == saved["n"]


def test_interrupted_run_resumes_where_it_stopped(run, tmp_path, monkeypatch):
    cfg, _ = run
    short = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path), "epochs": 2, "limit": 100})
    real_write = train_module._write_metrics

    def interrupt_after_first_epoch(history, out):
        real_write(history, out)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_write_metrics", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(short)
    first = (tmp_path / "metrics.csv").read_text().splitlines()
    monkeypatch.setattr(train_module, "_write_metrics", real_write)
    train(TrainConfig(**{**short.__dict__, "resume": str(tmp_path / "last.pt")}))
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(first) == 2 and len(rows) == 3 and rows[1] == first[1] and rows[2].startswith("2,")
    with pytest.raises(MoodLensError, match="same --epochs"):
        train(TrainConfig(**{**short.__dict__, "epochs": 5, "resume": str(tmp_path / "last.pt")}))


def test_resume_refuses_another_preset(run, tmp_path, small_csv):
    cfg, _ = run
    other = TrainConfig(**{**cfg.__dict__, "data": str(small_csv), "out": str(tmp_path), "model": "moodnet_s",
                           "resume": f"{cfg.out}/last.pt"})
    with pytest.raises(MoodLensError, match="a moodnet_xs for happy, surprise; this run trains a moodnet_s"):
        train(other)


@pytest.mark.parametrize("arch", ["moodnet_s", "moodnet_sd"])
def test_the_shipped_model_starts_its_own_preset_or_a_deeper_one_reading_faces_as_it_does(arch):
    from moodlens.classify import default_model_path
    from moodlens.preprocess import preprocess
    from moodlens.training.models import create_model, load_exported, settle_batchnorms

    shipped = EmotionModel(default_model_path())
    faces = load_fer2013(FER_CSV, "PublicTest").images[:700]
    x = torch.from_numpy(preprocess(faces, shipped.spec))
    model = create_model(arch, fer2013_head=True)
    settle_batchnorms(model, load_exported(model, str(default_model_path())), x[200:])
    with torch.no_grad():
        logits = model.eval()(x[:200])
        in_training = model.train()(x[:200])
    meta = {p.key: p.value for p in onnx.load(str(default_model_path())).metadata_props}
    temperature = json.loads(meta["moodlens.info"])["temperature"]
    assert np.abs((logits / temperature).softmax(1).numpy() - shipped.predict(faces[:200])).max() < 1e-4
    # Training normalises by each batch's own statistics: the settled BatchNorms keep the reading
    # (unsettled ones, expecting mean 0 and variance 1, rescale every layer).
    assert (in_training.argmax(1) == logits.argmax(1)).float().mean() > 0.9


def test_init_from_the_shipped_model_grows_a_deeper_net_that_reads_as_well(tmp_path, small_csv, capsys):
    from moodlens.classify import default_model_path
    from moodlens.weights import WEIGHTS_DIR

    shipped = default_model_path()
    report = train(TrainConfig(data=str(small_csv), out=str(tmp_path / "grown"), model="moodnet_sd", init=str(shipped),
                               epochs=1, batch_size=50, limit=100, lr=1e-6))
    faces = load_fer2013(small_csv, "PublicTest")
    own = (EmotionModel(shipped).predict(faces.images).argmax(1) == faces.labels).mean()
    # a fresh net after one such epoch is near chance (0.25 on these faces)
    assert report["accuracy"] == pytest.approx(own, abs=0.03) and own > 0.5
    capsys.readouterr()
    for args, says in [(["--arch", "moodnet_m"], "its stages of [1, 1, 1] blocks do not fit this network's [2, 2, 2, 2]"),
                       (["--classes", "happy,sad"], "made for other classes or preprocessing"),
                       (["--init", str(WEIGHTS_DIR / "centerface.onnx")], "not a MoodLens model")]:
        code = main(["train", str(small_csv), "--out", str(tmp_path / "bad"), "--limit", "50", "--epochs", "1",
                     "--init", str(shipped), *args])
        err = capsys.readouterr().err
        assert code == 2 and says in err and err.count("\n") == 1, (args, err)


def test_init_starts_a_fresh_schedule_from_a_trained_run(run, tmp_path, capsys):
    cfg, report = run
    best = Path(cfg.out) / "best.pt"
    tuned = train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "tuned"), "init": str(best), "epochs": 1,
                                 "limit": 100, "lr": 1e-6}))
    # One epoch at a tiny learning rate keeps the trained weights, so the trained run's balanced
    # recall; a fresh net after one such epoch reads nearly every face as one class (0.5).
    recall = [s["recall"] for s in tuned["per_class"].values()]
    assert np.mean(recall) > 0.65 and abs(tuned["accuracy"] - report["accuracy"]) < 0.05, tuned["per_class"]
    source = torch.load(best, weights_only=False)
    assert source["epoch"] > 1 and torch.load(tmp_path / "tuned" / "last.pt", weights_only=False)["epoch"] == 1
    capsys.readouterr()
    for name, args in [("other preset", ["--arch", "moodnet_s", "--classes", "happy,surprise"]),
                       ("other classes", ["--arch", "moodnet_xs", "--classes", "happy,sad"])]:
        code = main(["train", str(FER_CSV), "--out", str(tmp_path / "bad"), "--limit", "50", "--epochs", "1",
                     "--init", str(best), *args])
        err = capsys.readouterr().err
        assert code == 2 and "a moodnet_xs for happy, surprise; this run trains" in err and err.count("\n") == 1, name


def test_export_matches_torch_on_real_faces(run, tmp_path):
    cfg, _ = run
    report = export(f"{cfg.out}/best.pt", tmp_path / "m.onnx", quantize=True)
    assert report["max_abs_diff_vs_torch"] < 1e-4
    assert report["accuracy_onnx"] == pytest.approx(report["accuracy_torch"], abs=1e-3)
    assert report["ece_after"] <= report["ece_before"] + 1e-6  # temperature fitted to lower NLL
    assert abs(report["int8_accuracy"] - report["accuracy_onnx"]) < 0.05
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["moodlens.spec"])["classes"] == ["happy", "surprise"]

    model = EmotionModel(tmp_path / "m.onnx")
    assert model.classes == ("happy", "surprise")
    faces = load_fer2013(FER_CSV, "PublicTest", classes="happy,surprise")
    probs = model.predict(faces.images[:64])
    assert probs.shape == (64, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_run_stores_absolute_data_paths_and_exports_from_any_folder(tmp_path, small_csv, monkeypatch):
    monkeypatch.chdir(small_csv.parent)
    out = tmp_path / "runs" / "short"
    train(TrainConfig(data=small_csv.name, out="runs/short", model="moodnet_xs", classes="happy,surprise", epochs=1,
                      batch_size=50, limit=50))
    assert json.loads((out / "config.json").read_text())["data"] == str(small_csv.resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    report = export(out / "best.pt", "m.onnx", calibrate=False)
    assert report["n_val"] == len(load_fer2013(small_csv, "PublicTest", classes="happy,surprise"))


def test_export_names_the_option_for_a_data_file_that_is_not_there(run, tmp_path, small_csv, fer_rows):
    """A run trained before data paths were stored absolute, exported from another folder."""
    cfg, _ = run
    state = torch.load(Path(cfg.out) / "best.pt", weights_only=False)
    state["config"].update(data="../gone/fer2013.csv.gz", ferplus="../gone/fer2013new.csv")
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.raises(MoodLensError, match=r"its training data ../gone/fer2013.csv.gz is not there \(relative to "
                                            r"the folder training ran from\); give it with --data"):
        export(old, tmp_path / "m.onnx")
    with pytest.raises(MoodLensError, match="its FER\\+ vote file ../gone/fer2013new.csv is not there.*--ferplus$"):
        export(old, tmp_path / "m.onnx", data=str(small_csv))
    votes = tmp_path / "votes.csv"  # every annotator agrees with FER2013's label
    lines = ["Usage,Image name," + ",".join(FERPLUS_COLUMNS) + ",unknown,NF"]
    for row in fer_rows:
        chosen = FER2013_CLASSES[int(row["emotion"])]
        lines.append(f"{row['Usage']},face.png," + ",".join("10" if FERPLUS_COLUMNS[c] == chosen else "0"
                                                            for c in FERPLUS_COLUMNS) + ",0,0")
    votes.write_text("\n".join(lines) + "\n")
    assert main(["export", str(old), "--out", str(tmp_path / "m.onnx"), "--data", str(small_csv),
                 "--ferplus", str(votes), "--no-calibrate"]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["n_val"] == len(load_fer2013(small_csv, "PublicTest", classes="happy,surprise"))


def test_emotion_model_takes_any_size_grey_or_bgr():
    model = EmotionModel()
    assert model.classes == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 100, 80), dtype=np.uint8)
    bgr = np.repeat(grey[..., None], 3, axis=3)
    np.testing.assert_allclose(model.predict(grey), model.predict(bgr), atol=1e-5)
    mixed = model.predict([grey[0], bgr[1, :50, :50]])
    assert mixed.shape == (2, 7)
    assert model.predict(np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)


def test_wrong_model_files_give_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        EmotionModel(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"definitely not protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        EmotionModel(tmp_path / "junk.onnx")
    from moodlens.weights import WEIGHTS_DIR

    with pytest.raises(ModelError, match="not a MoodLens model"):
        EmotionModel(WEIGHTS_DIR / "centerface.onnx")


@pytest.mark.parametrize("name, params_m, macs_m", [("moodnet_xs", 0.68, 59), ("moodnet_s", 1.21, 100),
                                                    ("moodnet_sd", 2.39, 140)])
def test_preset_sizes_match_their_docstrings(name, params_m, macs_m):
    from moodlens.training.models import create_model

    model = create_model(name).eval()
    macs = []
    hooks = [m.register_forward_hook(lambda mod, _i, out: macs.append(mod.weight.numel() * out.shape[2] * out.shape[3]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    model(torch.zeros(1, 1, 48, 48))
    for h in hooks:
        h.remove()
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=0.02)
    assert sum(macs) / 1e6 == pytest.approx(macs_m, rel=0.03)


def test_a_run_records_the_precision_it_trained_in_not_the_one_asked_for(tmp_path, small_csv, monkeypatch):
    monkeypatch.setattr(train_module, "bf16_supported", lambda device: False)  # a CPU without AVX512-BF16
    train(TrainConfig(data=str(small_csv), out=str(tmp_path), model="moodnet_xs", classes="happy,surprise", epochs=1,
                      batch_size=50, limit=50, bf16=True))
    assert json.loads((tmp_path / "config.json").read_text())["bf16"] is False
