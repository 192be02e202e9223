"""metrics.jsonl on resume: records after the checkpoint are dropped, and the trackers that
already stored them are not sent them again; a buffered one (offline W&B) is."""

from __future__ import annotations

import json

from tailorkit.track.jsonl import JsonlSink


class Tracker:
    def __init__(self, durable: bool) -> None:
        self.durable, self.steps = durable, []

    def log(self, kind: str, step: int, values: dict) -> None:
        self.steps.append((kind, values.get("split"), step))


def test_records_written_again_after_a_resume_reach_only_the_trackers_that_lost_them(tmp_path):
    path = tmp_path / "metrics.jsonl"
    before = JsonlSink(path)
    for step in range(1, 7):
        before.log("train", step, {"loss": 1.0 / step})
    before.log("eval", 6, {"split": "validation", "accuracy": 0.5})

    stored, buffered = Tracker(durable=True), Tracker(durable=False)
    after = JsonlSink(path, [stored, buffered])
    after.truncate_after(4)  # the checkpoint's step
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]
    for step in (5, 6, 7):
        after.log("train", step, {"loss": 1.0 / step})
    after.log("eval", 6, {"split": "validation", "accuracy": 0.5})
    assert stored.steps == [("train", None, 7)]
    assert buffered.steps == [("train", None, 5), ("train", None, 6), ("train", None, 7),
                              ("eval", "validation", 6)]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5, 6, 7, 6]
