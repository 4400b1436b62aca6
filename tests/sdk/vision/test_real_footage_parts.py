"""The parts issue 25 added for real footage, each on inputs built to show what it is for: merging the
views of a tiled frame, the tracker's colour cue, the crop score and its floor, and odd-looking crops."""

import numpy as np

from sen_infer.vision.ssdlite import merge_views
from sen_infer.vision.tracking import (MIN_CROP_SCORE, MotionTracker, Observation, Track, colour_signature,
                                       crop_score, pick_crops)


def _yxyx(x, y, w, h):
    return [y, x, y + h, x + w]


def test_merged_views_fuse_one_person_s_boxes_drop_pieces_and_keep_neighbours():
    boxes = np.array([_yxyx(100, 50, 40, 120), _yxyx(104, 54, 40, 120),  # one person seen twice
                      _yxyx(106, 60, 30, 50),  # a piece of them (a tile cut through their legs)
                      _yxyx(200, 50, 40, 120)], np.float64)  # someone else beside them
    scores = np.array([0.9, 0.6, 0.5, 0.8])
    out = merge_views(boxes, scores, (480, 640))
    assert [round(s, 2) for *_, s in out] == [0.9, 0.8]
    x, y, w, h, _ = out[0]
    # the kept box is the score-weighted mean (float64 sums of a few terms: 1e-9 is far above their rounding) of the two views: 0.9 * 100 + 0.6 * 104 over 1.5
    assert abs(x - (0.9 * 100 + 0.6 * 104) / 1.5) < 1e-9 and abs(y - (0.9 * 50 + 0.6 * 54) / 1.5) < 1e-9
    # width and height come out of corners averaged in float64: equal to a few ulps of the corners (~1e-13)
    assert abs(w - 40) < 1e-9 and abs(h - 120) < 1e-9
    assert merge_views(np.zeros((0, 4)), np.zeros(0), (480, 640)) == []


def _frame_with(people, width: int = 60):
    frame = np.full((240, 400, 3), 128, np.uint8)
    for x, colour in people:
        frame[60:180, x : x + width] = colour
    return frame


RED, BLUE = (0, 0, 220), (220, 0, 0)  # BGR


def _swap(appearance: float) -> list[set]:
    """Two people side by side (red at x 100, blue at 170, 60 px wide), then, at a low frame rate, a frame
    in which they have passed each other: blue now at 110, red at 165. Each new box overlaps the other
    person's old box (IoU 0.71 and 0.85) and not its own. The colours of each confirmed track's crops."""
    tracker = MotionTracker(appearance=appearance)
    for i in range(3):
        tracker.update(i, [(100, 60, 60, 120, 0.9), (170, 60, 60, 120, 0.9)],
                       _frame_with([(100, RED), (170, BLUE)]))
    tracker.update(3, [(110, 60, 60, 120, 0.9), (165, 60, 60, 120, 0.9)], _frame_with([(110, BLUE), (165, RED)]))
    out = []
    for track in tracker.close():
        seen = set()
        for o in track.observations:
            middle = o.crop[o.crop.shape[0] // 2, o.crop.shape[1] // 2]
            seen.add("red" if middle[2] > middle[0] else "blue")
        out.append(seen)
    return out


def test_the_colour_cue_never_hands_one_person_s_track_to_another():
    """Box overlap alone gives each track the other person (their crops then mix two people, and a search
    for one finds the other); with the colour cue the swapped pairs are refused and each track keeps its
    person (the passers-by start new tracks)."""
    assert sorted(map(sorted, _swap(appearance=0.0))) == [["blue", "red"], ["blue", "red"]]
    assert sorted(map(sorted, _swap(appearance=0.5))) == [["blue"], ["red"]]


def test_colour_signatures_are_unit_vectors_alike_for_one_person_and_apart_for_two():
    frame = _frame_with([(100, RED), (200, BLUE)])
    red, red_again, blue = (colour_signature(frame, b) for b in ((100, 60, 60, 120), (101, 62, 58, 118),
                                                                 (200, 60, 60, 120)))
    assert abs(np.linalg.norm(red) - 1) < 1e-6 and red @ red_again > 0.99 and red @ blue < 0.2


def test_crop_score_is_confidence_shape_whole_and_alone():
    assert crop_score((100, 50, 40, 120), 640, 480) == 1.0
    assert abs(crop_score((100, 50, 40, 120), 640, 480, confidence=0.7) - 0.7) < 1e-12
    assert crop_score((0, 50, 40, 120), 640, 480) == 0.5  # cut by the frame's left border
    assert abs(crop_score((100, 50, 40, 120), 640, 480, covered=0.5) - 0.25) < 1e-12
    # wider than a person (0.75 of their height) falls linearly to 0 at twice that: square 2/3, 1.5:1 nothing
    assert abs(crop_score((100, 50, 120, 120), 640, 480) - 2 / 3) < 1e-12
    assert crop_score((100, 50, 180, 120), 640, 480) == 0.0  # a group or a car, not a person
    assert crop_score((100, 50, 10, 120), 640, 480) < MIN_CROP_SCORE  # a sliver: a fragment


def _obs(frame, quality, look, score=1.0):
    crop = np.zeros((120, 40, 3), np.uint8)
    return Observation(frame, (10, 10, 40, 120), quality, crop, 0.0, 1.0, score, look)


def test_crops_under_the_floor_or_odd_for_their_track_are_not_chosen():
    usual = np.zeros(128)
    usual[[3, 70]] = 1 / np.sqrt(2)
    odd = np.zeros(128)
    odd[[3, 40]] = 1 / np.sqrt(2)  # half its colours are something else: a sign in front of the person
    t = Track(1, [_obs(0, 5.0, usual), _obs(4, 9.0, odd), _obs(8, 4.0, usual), _obs(12, 3.0, usual),
                  _obs(16, 99.0, usual, score=MIN_CROP_SCORE / 2)])
    chosen = pick_crops(t, 2)
    assert [o.frame for o in chosen] == [0, 8]  # the sharpest crop is odd, the best-ranked one under the floor
    lone = Track(2, [_obs(0, 1.0, usual, score=0.1), _obs(1, 2.0, usual, score=0.05)])
    assert pick_crops(lone, 4) == []  # nothing good enough: the track stores nothing
