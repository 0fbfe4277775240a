"""A stored session as the dashboard shows it for review: the same shape as a live snapshot
(:meth:`moodlens.web.live.LiveSession.snapshot`), computed from the per-second records."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from moodlens.aggregate import attention_flags, class_timeline, mood
from moodlens.store import Session, Store
from moodlens.web.live import spark


def review(store: Store, session: Session, timeline_bins: int = 600, **flag_args) -> dict:
    """The whole session: overall class mood, a tile per participant with their most frequent
    emotion, a sparkline over the session and every attention flag raised, and the class
    timeline (averaged into at most ``timeline_bins`` points)."""
    classes = session.classes
    records = store.seconds(session.id)
    by_person = defaultdict(list)
    for r in records:
        by_person[r.track_id].append(r)
    tiles = []
    for p in store.participants(session.id):
        mine = by_person.get(p.id, [])
        emotions = Counter(r.emotion for r in mine if r.emotion)
        top = emotions.most_common(1)[0][0] if emotions else None
        tiles.append({**p.to_dict(), "connected": False, "status": "review", "emotion": top,
                      "confidence": round(emotions[top] / len(mine), 3) if top else 0.0,
                      "seconds": len(mine), "spark": spark(mine),
                      "flags": [f.to_dict() for f in attention_flags(mine, **flag_args)]})
    per_second = class_timeline(records, classes)
    size = max(1, math.ceil(len(per_second) / timeline_bins))
    timeline = {"seconds": [], "shares": [], "judged": []}
    for i in range(0, len(per_second), size):
        chunk = per_second[i:i + size]
        judged = sum(n for _, _, n in chunk)
        timeline["seconds"].append(chunk[0][0])
        timeline["shares"].append([round(sum(s[c] * n for _, s, n in chunk) / judged, 4) if judged else 0.0
                                   for c in classes])
        timeline["judged"].append(round(judged / len(chunk), 2))
    end = session.ended_at if session.ended_at is not None else session.started_at + (
        records[-1].second + 1 if records else 0)
    return {"session": session.to_dict(), "classes": list(classes), "live": False,
            "now": round(end - session.started_at, 2), "mood": mood(records, classes),
            "judged": sum(1 for r in records if r.emotion), "present": 0, "participants": tiles,
            "timeline": timeline, "flagged": sum(bool(t["flags"]) for t in tiles)}
