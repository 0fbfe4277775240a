"""Model v2 training paths: webcam degradations, FER+ blended targets, the crowd-agreement set,
EMA, the corruption benchmark and transfer learning from a local torchvision state dict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FER_CSV, FERPLUS_CSV, write_csv
from moodlens.classes import FER2013_CLASSES
from moodlens.classify import default_model_path
from moodlens.cli import main
from moodlens.errors import MoodLensError
from moodlens.preprocess import preprocess
from moodlens.training.data import DataError, ferplus_majority, load_crowd_majority, load_fer2013, load_ferplus_majority
from moodlens.training.degrade import CORRUPTIONS, corrupt, random_degrade

torch = pytest.importorskip("torch")  # the `train` extra


@pytest.fixture(scope="module")
def faces():
    return load_fer2013(FER_CSV, "PublicTest").images[:64]


def high_frequency(images: np.ndarray) -> float:
    return float(np.abs(np.diff(images.astype(np.float32), axis=2)).mean())


def test_each_corruption_changes_faces_reproducibly(faces):
    for name in CORRUPTIONS:
        once, again = corrupt(faces, name, seed=3), corrupt(faces, name, seed=3)
        assert once.shape == faces.shape and once.dtype == np.uint8, name
        np.testing.assert_array_equal(once, again)
        assert np.abs(once.astype(int) - faces).mean() > 1.0, name
    # Blur and downscaling remove detail; noise adds it; low light darkens.
    assert high_frequency(corrupt(faces, "blur")) < 0.6 * high_frequency(faces)
    assert high_frequency(corrupt(faces, "small")) < 0.8 * high_frequency(faces)
    assert high_frequency(corrupt(faces, "noise")) > 1.3 * high_frequency(faces)
    assert corrupt(faces, "low_light").mean() < 0.6 * faces.mean()
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(faces, "fog")


def test_random_degrade_touches_about_the_asked_share(faces):
    rng = np.random.default_rng(0)
    many = np.concatenate([faces] * 8)
    out = random_degrade(many, rng, p=0.5)
    changed = (out != many).any(axis=(1, 2)).mean()
    assert 0.35 < changed < 0.65
    assert (random_degrade(many, rng, p=0.0) == many).all()


def test_blended_targets_keep_fer2013_labels_and_mix_in_the_votes():
    plain = load_fer2013(FER_CSV, "PublicTest")
    votes_only = load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV)
    blended = load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV, ferplus_weight=0.5)
    assert len(blended) == len(votes_only) < len(plain)  # FER+ non-faces dropped either way
    np.testing.assert_allclose(blended.soft.sum(1), 1.0, atol=1e-5)
    onehot = np.eye(7)[blended.labels]
    np.testing.assert_allclose(blended.soft, 0.5 * votes_only.soft + 0.5 * onehot, atol=1e-5)
    # Labels are FER2013's own where the crowd disagrees with them.
    assert (blended.labels != votes_only.labels).mean() > 0.2
    with pytest.raises(DataError, match="between 0 and 1"):
        load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV, ferplus_weight=1.5)


def test_crowd_majority_set_is_faces_most_annotators_agree_on():
    crowd = load_crowd_majority(FER_CSV, FERPLUS_CSV, "PublicTest")
    plain = load_fer2013(FER_CSV, "PublicTest")
    assert 2000 < len(crowd) < len(plain)
    assert crowd.counts()["neutral"] > crowd.counts()["sad"]  # the crowd calls many FER2013 "sad" faces neutral
    # The same faces read through the votes: every label holds more than half of 10 votes.
    with open(FERPLUS_CSV) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.startswith("PublicTest")]
    names = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy", "sadness": "sad",
             "surprise": "surprise", "neutral": "neutral"}
    agreed = []
    for r in rows:
        votes = {names[h]: float(v) for h, v in zip(header, r) if h in names}
        total = sum(float(v) for h, v in zip(header, r) if h not in ("Usage", "Image name"))
        top = max(votes, key=votes.get)
        if r[1] and votes[top] > total / 2:
            agreed.append(top)
    assert len(agreed) == len(crowd)
    assert [crowd.classes[i] for i in crowd.labels] == agreed


# Columns: angry disgust fear happy sad surprise neutral contempt | unknown NF (FERPLUS_VOTE_COLUMNS)
MAJORITY_TABLE = [
    ([0, 0, 0, 2, 0, 0, 6, 0, 2, 0], "neutral"),   # a clear winner
    ([0, 0, 0, 4, 0, 3, 0, 0, 3, 0], "happy"),     # the most votes need not be a strict majority
    ([0, 0, 0, 0, 0, 0, 0, 4, 3, 3], "contempt"),  # contempt is a label (a 7-class model misses it)
    ([0, 0, 0, 4, 0, 0, 4, 0, 2, 0], None),        # a tie between two emotions
    ([0, 0, 0, 0, 0, 0, 3, 0, 3, 4], None),        # not-a-face has more votes
    ([0, 0, 0, 0, 0, 3, 0, 0, 4, 3], None),        # unknown has more votes
    ([0, 0, 0, 0, 4, 0, 0, 0, 4, 2], "sad"),       # unknown ties, so does not outvote the emotion
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], None),        # a row FER+ marks as not a face (no votes)
]

def test_ferplus_majority_vote_on_a_hand_computed_table():
    from moodlens.classes import FERPLUS_CLASSES

    votes = np.array([row for row, _ in MAJORITY_TABLE], np.float32)
    got = [FERPLUS_CLASSES[i] if i >= 0 else None for i in ferplus_majority(votes)]
    assert got == [label for _, label in MAJORITY_TABLE]


def test_ferplus_majority_set_reads_the_vote_file_as_the_table_says(tmp_path, fer_rows):
    """The same table through the files: the loader keeps the labelled rows and says contempt."""
    from moodlens.classes import FERPLUS_CLASSES

    rows = [{**row, "emotion": "0", "Usage": "PublicTest"} for row in fer_rows[:len(MAJORITY_TABLE)]]
    csv_path = write_csv(tmp_path / "fer.csv", rows)
    with open(FERPLUS_CSV) as f:
        header = f.readline().strip().split(",")
    order = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6,
             "contempt": 7, "unknown": 8, "NF": 9}
    lines = [",".join(header)]
    for i, (votes, _) in enumerate(MAJORITY_TABLE):
        name = f"fer{i:07d}.png" if any(votes) else ""
        lines.append(",".join(["PublicTest", name, *(str(votes[order[h]]) for h in header[2:])]))
    (tmp_path / "votes.csv").write_text("\n".join(lines) + "\n")
    majority = load_ferplus_majority(csv_path, tmp_path / "votes.csv")
    assert majority.classes == FERPLUS_CLASSES
    assert [majority.classes[i] for i in majority.labels] == [label for _, label in MAJORITY_TABLE if label]


def test_degraded_blended_ema_training_beats_chance(tmp_path):
    from moodlens.training.train import TrainConfig, train

    cfg = TrainConfig(data=str(FER_CSV), out=str(tmp_path), model="moodnet_xs", classes="happy,surprise", limit=500,
                      ferplus=str(FERPLUS_CSV), ferplus_weight=0.5, degrade=0.5, ema=0.9,
                      epochs=10, batch_size=50, lr=3e-3, patience=10, seed=1)
    report = train(cfg)
    # Chance is 0.5 balanced recall; degraded faces and blended targets learn slower than the
    # plain run of test_train_export in this short a run.
    assert np.mean([s["recall"] for s in report["per_class"].values()]) > 0.6, report["per_class"]
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    # The checkpoint's model is the average; the raw weights are kept for --resume.
    assert set(state["trained"]) == set(state["model"])
    assert any(not torch.equal(state["trained"][k], state["model"][k]) for k in state["model"])


def test_distilled_student_learns_from_a_teacher_checkpoint_and_its_saved_probabilities(tmp_path):
    from moodlens.training.train import TrainConfig, train

    common = dict(data=str(FER_CSV), classes="happy,surprise", limit=400, batch_size=50, lr=3e-3, seed=1)
    train(TrainConfig(out=str(tmp_path / "teacher"), model="moodnet_xs", epochs=8, patience=8, **common))
    report = train(TrainConfig(out=str(tmp_path / "student"), model="moodnet_xs", epochs=8, patience=8,
                               teacher=[str(tmp_path / "teacher" / "best.pt")], teacher_weight=0.7, **common))
    assert np.mean([s["recall"] for s in report["per_class"].values()]) > 0.6, report["per_class"]
    probs = np.load(tmp_path / "student" / "teacher_probs.npy")
    assert probs.shape == (400, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # A trained teacher is better than chance on its own training faces.
    train_set = load_fer2013(FER_CSV, "Training", "happy,surprise")
    subset = np.sort(np.random.default_rng(1).permutation(len(train_set))[:400])
    assert (probs.argmax(1) == train_set.labels[subset]).mean() > 0.6


def test_distillation_targets_blend_the_teachers_into_the_labels(tmp_path):
    from moodlens.training.train import TrainConfig, distillation_targets

    faces = load_fer2013(FER_CSV, "PublicTest", "happy,surprise")
    probs = np.random.default_rng(0).dirichlet([1, 1], len(faces)).astype(np.float32)
    np.save(tmp_path / "a.npy", probs)
    np.save(tmp_path / "b.npy", probs[:, ::-1].copy())
    cfg = TrainConfig(data="", teacher=[str(tmp_path / "a.npy")], teacher_weight=0.7)
    targets = distillation_targets(cfg, faces, tmp_path, torch.device("cpu"), False).numpy()
    np.testing.assert_allclose(targets, 0.7 * probs + 0.3 * np.eye(2)[faces.labels], atol=1e-6)
    cfg.teacher = [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]  # two teachers are averaged
    np.testing.assert_allclose(distillation_targets(cfg, faces, tmp_path, torch.device("cpu"), False).numpy(),
                               0.7 * 0.5 + 0.3 * np.eye(2)[faces.labels], atol=1e-6)
    np.save(tmp_path / "short.npy", probs[:10])
    cfg.teacher = [str(tmp_path / "short.npy")]
    with pytest.raises(MoodLensError, match="this run trains on"):
        distillation_targets(cfg, faces, tmp_path, torch.device("cpu"), False)
    cfg.teacher = [str(default_model_path())]  # an exported model teaches only the classes it knows
    with pytest.raises(MoodLensError, match="the teacher knows angry,disgust"):
        distillation_targets(cfg, faces, tmp_path, torch.device("cpu"), False)


def test_class_weights_do_not_pull_soft_teacher_targets_toward_rare_classes():
    # 90 happy faces and 10 disgust faces; the teacher says 0.9 happy and spreads the rest.
    from moodlens.training.data import FaceSet
    from moodlens.training.train import TrainConfig, _loss

    labels = np.array([3] * 90 + [1] * 10)
    targets = torch.full((100, 7), 0.1 / 6)
    targets[torch.arange(100), torch.from_numpy(labels)] = 0.9
    faces = FaceSet(np.zeros((100, 48, 48), np.uint8), labels, FER2013_CLASSES)
    cfg = TrainConfig(data="x", teacher=["t.npz"], class_weights="sqrt", label_smoothing=0.0)
    loss_of = _loss(cfg, faces, targets, None, 7, torch.device("cpu"))
    happy = torch.arange(90)
    # A student that says exactly what the teacher says is at the loss's minimum: weighting by
    # class must not make "disgust" on a happy face cheaper than the teacher's 1.7 %.
    logits = targets[happy].log().clone().requires_grad_(True)
    loss, hits = loss_of((logits, None), happy)
    loss.backward()
    assert hits == 90 and logits.grad.abs().max() < 1e-6
    # The rare class still counts more, face by face: the same error on one happy and one disgust
    # face pulls harder on the disgust face.
    wrong = torch.zeros(2, 7)
    wrong[:, 0] = 5.0
    wrong.requires_grad_(True)
    loss, _ = loss_of((wrong, None), torch.tensor([0, 95]))
    loss.backward()
    pull = wrong.grad.abs().sum(1)
    assert pull[1] > 1.5 * pull[0]


def test_the_shipped_onnx_model_can_teach_its_successor(tmp_path):
    from moodlens.training.train import TrainConfig, distillation_targets

    faces = load_fer2013(FER_CSV, "PublicTest").subset(np.arange(600))
    cfg = TrainConfig(data="", teacher=[str(default_model_path())], teacher_weight=0.5)
    targets = distillation_targets(cfg, faces, tmp_path, torch.device("cpu"), False).numpy()
    probs = np.load(tmp_path / "teacher_probs.npy")
    np.testing.assert_allclose(targets, 0.5 * probs + 0.5 * np.eye(7)[faces.labels], atol=1e-6)
    assert (probs.argmax(1) == faces.labels).mean() > 0.6  # the shipped model, on faces it was not trained on


def test_teacher_probabilities_kept_by_row_serve_any_later_run_on_the_same_csv(tmp_path):
    """A teacher file made for all PublicTest faces teaches a run on a filtered subset of them
    (here: FER+ votes drop the non-faces and a class subset drops the rest), face by face."""
    from moodlens.training.train import TrainConfig, distillation_targets, save_teacher_file

    everything = load_fer2013(FER_CSV, "PublicTest")
    probs = np.random.default_rng(0).dirichlet(np.ones(7), len(everything)).astype(np.float32)
    save_teacher_file(tmp_path / "t.npz", probs, everything)
    faces = load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV)
    assert len(faces) < len(everything)
    cfg = TrainConfig(data="", teacher=[str(tmp_path / "t.npz")], teacher_weight=1.0)
    got = distillation_targets(cfg, faces, tmp_path, torch.device("cpu"), False).numpy()
    where = np.searchsorted(everything.rows, faces.rows)
    np.testing.assert_allclose(got, probs[where], atol=1e-3)  # float16 on disk
    assert not np.allclose(got, probs[: len(faces)], atol=1e-3)  # by row, not by position
    training = load_fer2013(FER_CSV, "Training").subset(np.arange(5))
    with pytest.raises(MoodLensError, match="no probabilities for 5 of the training faces"):
        distillation_targets(cfg, training, tmp_path, torch.device("cpu"), False)
    with pytest.raises(MoodLensError, match="the teacher knows"):
        distillation_targets(cfg, load_fer2013(FER_CSV, "PublicTest", "happy,sad"), tmp_path, torch.device("cpu"), False)


@pytest.mark.parametrize("teacher, message", [
    ("{missing}", "no such checkpoint"),
    ("{junk}", "not a training checkpoint"),
])
def test_wrong_teacher_files_give_one_line_errors(capsys, tmp_path, teacher, message):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    teacher = teacher.format(missing=tmp_path / "nope.pt", junk=tmp_path / "junk.pt")
    code = main(["train", str(FER_CSV), "--out", str(tmp_path / "run"), "--limit", "50", "--epochs", "1",
                 "--teacher", teacher])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_evaluate_reports_crowd_agreement_and_corruptions(capsys, tmp_path, fer_rows):
    csv_path = write_csv(tmp_path / "fer.csv", fer_rows)
    # FER+ votes for the same rows: the first 300 Training and PublicTest rows of the vote file.
    with open(FERPLUS_CSV) as f:
        header, *lines = f.read().splitlines()
    kept = [line for line in lines if line.startswith("Training")][:300] + \
        [line for line in lines if line.startswith("PublicTest")][:300]
    (tmp_path / "votes.csv").write_text("\n".join([header, *kept]) + "\n")
    code = main(["evaluate", str(csv_path), "--ferplus", str(tmp_path / "votes.csv"), "--corruptions", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["n"] == 300
    assert 150 < report["crowd"]["n"] < 300 and 0.5 < report["crowd"]["accuracy"] <= 1.0
    # The paper's majority vote labels more faces than strict agreement does, and is harder.
    majority = report["ferplus_majority"]
    assert report["crowd"]["n"] < majority["n"] <= 300
    assert 0.4 < majority["accuracy"] < report["crowd"]["accuracy"]
    scores = report["corruptions"]["per_corruption"]
    assert set(scores) == set(CORRUPTIONS)
    mean = np.mean([s["accuracy"] for s in scores.values()])
    assert report["corruptions"]["mean_accuracy"] == pytest.approx(mean)
    assert report["corruptions"]["drop"] == pytest.approx(report["accuracy"] - mean)


def torchvision_resnet18_state(seed: int = 0) -> dict:
    """A state dict in torchvision's ResNet-18 layout (3-channel first convolution, 1000-way fc),
    as a user's downloaded weights would be; random values, made here."""
    from moodlens.training.models import create_model

    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 if v.is_floating_point() else v.clone()
             for k, v in create_model("resnet18").features.state_dict().items()}
    state["conv1.weight"] = torch.randn(64, 3, 7, 7, generator=gen) * 0.05
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    return state


def test_pretrained_backbone_warms_up_frozen_then_fine_tunes(tmp_path):
    from moodlens.training.train import TrainConfig, train

    weights = torchvision_resnet18_state()
    torch.save(weights, tmp_path / "resnet18.pth")
    common = dict(data=str(FER_CSV), model="resnet18", classes="happy,surprise", limit=300, batch_size=50,
                  lr=3e-3, pretrained=str(tmp_path / "resnet18.pth"), freeze_epochs=1, seed=1)
    train(TrainConfig(out=str(tmp_path / "warm"), epochs=1, **common))
    warm = torch.load(tmp_path / "warm" / "last.pt", weights_only=False)["model"]
    # During the warm-up the backbone is exactly the file's (the grey filter is the colour filters' sum).
    torch.testing.assert_close(warm["features.conv1.weight"], weights["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(warm["features.layer4.1.conv2.weight"], weights["layer4.1.conv2.weight"])
    torch.testing.assert_close(warm["features.layer1.0.bn1.running_mean"], weights["layer1.0.bn1.running_mean"])

    report = train(TrainConfig(out=str(tmp_path / "tuned"), epochs=3, **common))
    tuned = torch.load(tmp_path / "tuned" / "last.pt", weights_only=False)["model"]
    assert not torch.equal(tuned["features.layer4.1.conv2.weight"], weights["layer4.1.conv2.weight"])
    assert report["accuracy"] > 0.5


@pytest.mark.parametrize("args, message", [
    (["--pretrained", "{file}"], "--pretrained needs --backbone"),
    (["--backbone", "vgg16", "--pretrained", "{file}"], "not a torchvision vgg16 state dict"),
    (["--backbone", "resnet18", "--pretrained", "{junk}"], "not a PyTorch state dict"),
])
def test_wrong_pretrained_files_give_one_line_errors(capsys, tmp_path, args, message):
    torch.save(torchvision_resnet18_state(), tmp_path / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    args = [a.format(file=tmp_path / "r18.pth", junk=tmp_path / "junk.pth") for a in args]
    code = main(["train", str(FER_CSV), "--out", str(tmp_path / "run"), "--limit", "50", "--epochs", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_blending_votes_into_the_eight_class_task_is_refused():
    with pytest.raises(MoodLensError, match="needs the 7 FER2013 classes"):
        load_fer2013(FER_CSV, "PublicTest", ferplus=FERPLUS_CSV, ferplus_classes=True, ferplus_weight=0.5)


def test_a_two_head_model_trains_exports_and_each_benchmark_reads_its_own_head(tmp_path):
    from moodlens.classify import EmotionModel, ModelError
    from moodlens.training.evaluate import evaluate
    from moodlens.training.export import export
    from moodlens.training.train import TrainConfig, load_checkpoint, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(FER_CSV), out=str(run), model="moodnet_xs", ferplus=str(FERPLUS_CSV),
                      fer2013_head=True, limit=300, epochs=2, batch_size=100, patience=2, threads=2))
    assert "val_fer2013_acc" in (run / "metrics.csv").read_text().splitlines()[0]
    report = export(run / "best.pt", tmp_path / "two.onnx")
    head = report["fer2013_head"]
    assert head["output"] == "probs_fer2013" and head["n_val"] == 3589 and head["temperature"] > 0

    model = EmotionModel(tmp_path / "two.onnx")
    assert model.outputs == ("probs", "probs_fer2013") and model.has_fer2013_head
    faces = load_fer2013(FER_CSV, "PublicTest")
    shown, fer = model.predict(faces.images[:64]), model.predict(faces.images[:64], fer2013_head=True)
    np.testing.assert_allclose(fer.sum(1), 1.0, atol=1e-5)
    assert np.abs(shown - fer).max() > 1e-3  # two heads, not one output twice
    net, spec, _ = load_checkpoint(run / "best.pt")  # each ONNX head is its torch head, calibrated
    with torch.no_grad():
        _, logits = net.both(torch.from_numpy(preprocess(faces.images[:64], spec)))
    np.testing.assert_allclose(fer, (logits / head["temperature"]).softmax(1).numpy(), atol=1e-4)

    scored = evaluate(FER_CSV, model=model, ferplus=FERPLUS_CSV, progress=False)
    assert scored["head"] == "fer2013"
    everything = model.predict(faces.images, fer2013_head=True)
    assert scored["accuracy"] == pytest.approx(float((everything.argmax(1) == faces.labels).mean()))
    majority = load_ferplus_majority(FER_CSV, FERPLUS_CSV)
    hits = model.predict(majority.images).argmax(1) == np.array([model.classes.index(c) if c in model.classes else -1
                                                                  for c in majority.classes])[majority.labels]
    assert scored["ferplus_majority"]["accuracy"] == pytest.approx(float(hits.mean()))  # the product head

    train(TrainConfig(data=str(FER_CSV), out=str(tmp_path / "one"), model="moodnet_xs", limit=300, epochs=1,
                      batch_size=100, patience=1, threads=2))
    export(tmp_path / "one" / "best.pt", tmp_path / "one.onnx")
    one_head = EmotionModel(tmp_path / "one.onnx")
    assert not one_head.has_fer2013_head and evaluate(FER_CSV, model=one_head, progress=False)["head"] == "product"
    with pytest.raises(ModelError, match="no FER2013 head"):
        one_head.predict(faces.images[:2], fer2013_head=True)
    with pytest.raises(MoodLensError, match="needs a FER2013 CSV, its FER\\+ votes"):
        train(TrainConfig(data=str(FER_CSV), out=str(tmp_path / "x"), fer2013_head=True))
