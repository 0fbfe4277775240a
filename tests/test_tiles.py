"""Gallery tiles keep their participant when the meeting's grid reflows (moodlens.web.tiles), with
the real detector and model on a 4x5 gallery of 20 PublicTest faces, each in a room of its own."""

from __future__ import annotations

import colorsys
from collections import Counter

import cv2
import numpy as np
import pytest

from moodlens.gallery import make_gallery, match_boxes
from moodlens.web.tiles import GalleryTiles, look, similarity


class Made:
    def __init__(self, id: int, maybe: int | None):
        self.id, self.maybe = id, maybe


def room(face: np.ndarray, k: int, n: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 48x48 grey face in a webcam's room: a wall of its own colour and a shelf or lamp."""
    hue = k / n
    wall = np.array(colorsys.hsv_to_rgb(hue, 0.45, 0.75)[::-1]) * 255
    image = np.empty((270, 480, 3), np.uint8)
    image[:] = wall.astype(np.uint8)
    thing = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.6, 0.5)[::-1]) * 255
    x = 30 + (k * 53) % 140
    cv2.rectangle(image, (x, 40 + (k * 31) % 80), (x + 60, 200), thing.tolist(), -1)
    big = cv2.cvtColor(cv2.resize(face, (96, 96), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    image[87:183, 192:288] = big
    return image, (192, 87, 96, 96)


FACE = (0.5, 0.5)  # a face is half its tile's height, wherever the tile is (webcams keep their framing)
LEAVER = 7


def layouts(people):
    """The gallery before and after participant LEAVER leaves: (frame, true boxes, who is where)."""
    stayed = [k for k in range(len(people)) if k != LEAVER]
    before = make_gallery(people, 4, 5, (1280, 720), seed=1, face_frac=FACE)
    after = make_gallery([people[k] for k in stayed], 4, 5, (1280, 720), count=19, seed=1, face_frac=FACE)
    return [(*before, list(range(len(people)))), (*after, stayed)]


@pytest.fixture(scope="module")
def people(fer_rows, recognizer):
    """20 PublicTest faces, each in a room of its own, that the detector finds in both layouts
    (finding faces is not what is tested here: keeping them is)."""
    faces = [np.array(r["pixels"].split(), np.uint8).reshape(48, 48) for r in fer_rows if r["Usage"] == "PublicTest"]
    chosen, next_face = [], 0
    while next_face < len(faces):
        while len(chosen) < 20 and next_face < len(faces):
            chosen.append(faces[next_face])
            next_face += 1
        people = [room(face, k, 20) for k, face in enumerate(chosen)]
        missed = set()
        for frame, boxes, who in layouts(people):
            found = [f.box for f in recognizer.detect(frame)]
            missed |= {k for k, box in zip(who, boxes) if not match_boxes(found, [box])[0]}
        if not missed:
            return people
        chosen = [face for k, face in enumerate(chosen) if k not in missed]
    pytest.fail("fewer than 20 PublicTest faces found in gallery tiles")


@pytest.fixture(scope="module")
def recognizer():
    from moodlens.recognizer import Recognizer
    return Recognizer()


def whose(true_boxes, face) -> int | None:
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    for i, (tx, ty, tw, th) in enumerate(true_boxes):
        if tx <= cx <= tx + tw and ty <= cy <= ty + th:
            return i
    return None


def test_a_reflow_keeps_each_tile_with_its_participant(people, recognizer):
    made: list[Made] = []
    tiles = GalleryTiles(recognizer, lambda n, maybe: made.append(Made(100 + n, maybe)) or made[-1])
    seen = {phase: {k: Counter() for k in range(20)} for phase in (0, 1)}
    t = 0.0
    for phase, ((image, boxes, who), frames) in enumerate(zip(layouts(people), (40, 20))):
        for _ in range(frames):  # 2 frames/s: 20 s shared, then 10 s after the reflow
            frame = tiles.stream.push(image, t)
            for pid, face in tiles.assign(frame.faces, image).items():
                slot = whose(boxes, face) if face is not None else None
                if slot is not None:
                    seen[phase][who[slot]][pid] += 1
            t += 0.5
    first = {k: c.most_common(1)[0][0] for k, c in seen[0].items() if c}
    assert len(first) >= 19 and len(set(first.values())) == len(first)  # one tile each before the reflow
    assert [m.id for m in made[:len(first)]] == sorted(first.values())
    # new tiles are numbered in grid order: Tile 1 top left, then along the row
    assert sorted(first, key=first.get) == sorted(first)
    kept = sum(1 for k in first if k != LEAVER and seen[1][k] and seen[1][k].most_common(1)[0][0] == first[k])
    wrong = sum(n for k in first if k != LEAVER for pid, n in seen[1][k].items() if pid in first.values()
                and pid != first[k])
    print(f"\nreflow: {kept} of 19 kept their participant; {wrong} face-frames given to another person's tile")
    assert kept >= 18 and wrong == 0


def test_looks_are_the_same_person_mirrored_and_rescaled_but_not_their_neighbour(people):
    (a, box_a), (b, box_b) = people[0], people[1]
    x, y, w, h = box_a
    small = cv2.resize(a, (240, 135))
    mirrored = cv2.flip(small, 1)
    box_small = (240 - (x + w) // 2, y // 2, w // 2, h // 2)
    assert similarity(look(a, box_a), look(mirrored, box_small)) > 0.8
    assert similarity(look(a, box_a), look(b, box_b)) < 0.5


def test_two_equally_likely_people_make_an_unsure_new_tile_instead_of_a_merge(people):
    made: list[Made] = []

    class Stub:
        def open_stream(self, detect_every=2, emotions=True):
            return None

    from moodlens.faces import Face

    tiles = GalleryTiles(Stub(), lambda n, maybe: made.append(Made(n, maybe)) or made[-1])
    twin, box = people[0]
    x, y, w, h = box
    frame = np.concatenate([twin, twin], axis=1)  # two tiles showing the same look
    tiles.assign([Face((x, y, w, h), track_id=1), Face((x + 480, y, w, h), track_id=2)], frame)
    out = tiles.assign([Face((x + 240, y, w, h), track_id=3)], np.concatenate([twin[:, 240:], twin, twin[:, :240]], 1))
    assert len(made) == 3 and made[2].maybe in (1, 2) and out[3] is not None


def test_an_attention_only_gallery_never_reads_an_emotion(people, recognizer):
    image, boxes, _ = layouts(people)[0]
    tiles = GalleryTiles(recognizer, lambda n, maybe: None, emotions=False)
    faces = [tiles.stream.push(image, 0.5 * k) for k in range(3)][-1].faces
    assert len(faces) == len(boxes) and all(not f.scores and f.emotion is None for f in faces)
    assert any(f.pose is not None for f in faces)
