"""Rule state machines against scripted detections (no model needed)."""

from __future__ import annotations

import pytest

from analysis.detectors import Box
from analysis.rules import (
    CameraRules,
    Debouncer,
    assign,
    holder_of_phone,
    seat_of_person,
    seat_of_phone,
)
from config.models import RulesConfig, SeatConfig

# Two seats side by side: A on the left half, B on the right half, lower part of the image.
A = SeatConfig(id="A", camera="cam1", polygon=[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)])
B = SeatConfig(id="B", camera="cam1", polygon=[(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)])


def person(cx: float, bottom: float, score: float = 0.9, h: float = 0.4) -> Box:
    return Box("person", score, cx - 0.08, bottom - h, cx + 0.08, bottom)


def phone(cx: float, cy: float, score: float = 0.6) -> Box:
    return Box("cell phone", score, cx - 0.02, cy - 0.02, cx + 0.02, cy + 0.02)


def cfg(**kw: object) -> RulesConfig:
    # debounce only: the persistence of extra persons has tests of its own
    base: dict[str, object] = dict(open_k=3, open_n=5, close_m=4, seat_empty_seconds=10.0,
                                   extra_person_seconds=0.0)
    base.update(kw)
    return RulesConfig.model_validate(base)


def run(rules: CameraRules, frames: list[list[Box]], dt: float = 0.5, tamper=None):
    ups = []
    for i, boxes in enumerate(frames):
        ups += [(i, u.action, u.event) for u in rules.update(i * dt, boxes, (tamper or {}).get(i))]
    return ups


# --- debounce ---------------------------------------------------------------------------------


def test_debouncer_opens_on_kth_positive_of_n_and_closes_after_m_clear() -> None:
    d = Debouncer(3, 5, 4)
    seq = [1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    res = [d.update(float(i), bool(p)) for i, p in enumerate(seq)]
    assert res.index("open") == 4  # third positive inside the window 0..4
    assert d.start_s == 0.0
    assert res.index("close") == 11  # four consecutive clear frames 8..11
    assert d.end_s == 7.0
    assert res.count("open") == 1 and res.count("close") == 1


def test_debouncer_does_not_open_on_sparse_positives() -> None:
    d = Debouncer(3, 5, 4)
    # one positive in every three frames: never 3 in a window of 5
    assert all(d.update(float(i), i % 3 == 0) is None for i in range(40))


def test_debouncer_validates_parameters() -> None:
    with pytest.raises(ValueError):
        Debouncer(4, 3, 1)
    with pytest.raises(ValueError):
        Debouncer(1, 1, 0)


# --- seat assignment --------------------------------------------------------------------------


def test_person_belongs_to_seat_of_lower_centre_not_of_most_of_the_body() -> None:
    # body mostly over A (x 0.30..0.56) but feet centre at x=0.53 -> B
    b = Box("person", 0.9, 0.30, 0.55, 0.76, 0.9)
    assert seat_of_person(b, [A, B]) == "B"
    assert seat_of_person(person(0.25, 0.8), [A, B]) == "A"
    # lower centre above both polygons -> outside
    assert seat_of_person(person(0.25, 0.3), [A, B]) is None
    # ...unless within the margin
    assert seat_of_person(person(0.25, 0.49), [A, B], margin=0.02) == "A"


def test_phone_belongs_to_the_seat_of_the_person_holding_it() -> None:
    p_a, p_b = person(0.25, 0.8), person(0.75, 0.8)  # boxes x 0.17..0.33 / 0.67..0.83, y 0.4..0.8
    people = [(p_a, "A"), (p_b, "B")]
    assert seat_of_phone(phone(0.7, 0.7), [A, B], people) == "B"  # in B's hands
    # raised to the face, above every polygon, inside A's person box
    assert seat_of_phone(phone(0.22, 0.45), [A, B], people) == "A"
    # held out at arm's length beside A (0.04 from A's box, reach 0.35 x 0.16 = 0.056)
    assert seat_of_phone(phone(0.37, 0.6), [A, B], people) == "A"
    assert holder_of_phone(phone(0.37, 0.6), people) == (p_a, "A")
    # inside B's polygon but nobody within reach: a phone lying on the desk / a false box
    assert seat_of_phone(phone(0.55, 0.95), [A, B], people) is None
    assert seat_of_phone(phone(0.9, 0.1), [A, B], []) is None
    assert seat_of_phone(phone(0.9, 0.1), [], []) is None


def test_phone_in_seat_polygon_held_by_someone_at_another_seat_goes_to_the_holder() -> None:
    # a visitor standing at B (feet in B) holds something up that reaches into A's polygon
    visitor = Box("person", 0.8, 0.46, 0.2, 0.6, 0.9)
    people = [(person(0.2, 0.8), "A"), (visitor, "B")]
    assert seat_of_phone(phone(0.48, 0.55), [A, B], people) == "B"


def test_assign_ignores_phones_nobody_holds() -> None:
    a = assign([person(0.25, 0.8), phone(0.45, 0.95), phone(0.26, 0.5)], [A, B])
    assert a.phones["A"] == [phone(0.26, 0.5)] and a.phones["B"] == []
    assert a.unattributed_phones == [phone(0.45, 0.95)]


def test_assign_counts_people_outside_and_phones() -> None:
    a = assign([person(0.2, 0.8), person(0.3, 0.9), person(0.5, 0.2), phone(0.8, 0.8)], [A, B])
    assert len(a.people["A"]) == 2 and a.people["B"] == []
    assert len(a.outside) == 1
    assert a.phones["B"] == [] and len(a.unattributed_phones) == 1  # empty seat: nobody holds it
    b = assign([person(0.2, 0.8), person(0.75, 0.9), phone(0.8, 0.8)], [A, B])
    assert len(b.phones["B"]) == 1 and b.unattributed_phones == []


# --- rules ------------------------------------------------------------------------------------


def seated() -> list[Box]:
    return [person(0.25, 0.8), person(0.75, 0.8)]


def test_extra_person_one_event_per_incident_with_start_and_end() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    visitor = [person(0.35, 0.85, 0.7)]
    frames = [seated()] * 4 + [seated() + visitor] * 10
    frames[8] = seated()  # one missed detection inside the incident (< close_m)
    frames += [seated()] * 6
    ups = run(r, frames)
    ex = [(i, a, e) for i, a, e in ups if e.rule == "extra_person"]
    assert [a for _, a, _ in ex] == ["opened", "closed"]
    ev = ex[0][2]
    assert ev.seat == "A"
    assert ex[0][0] == 6  # 3rd positive frame
    assert ev.start_s == pytest.approx(4 * 0.5)
    assert ev.end_s == pytest.approx(13 * 0.5)
    assert ev.confidence == pytest.approx(0.7)
    assert not [u for u in ups if u[2].rule != "extra_person"]


def test_outside_person_is_extra_only_when_configured() -> None:
    walker = [person(0.5, 0.3)]
    frames = [seated() + walker] * 8 + [seated()] * 6
    on = run(CameraRules("cam1", [A, B], cfg(outside_seat_is_extra=True)), frames)
    assert [(a, e.rule, e.seat) for _, a, e in on] == [
        ("opened", "extra_person", None), ("closed", "extra_person", None)]
    off = run(CameraRules("cam1", [A, B], cfg(outside_seat_is_extra=False)), frames)
    assert off == []


def test_extra_person_must_stay_extra_person_seconds() -> None:
    """A person passing along the aisle (2.5 s) raises nothing; one who stays (6 s) does, from
    when they were first seen; one missed detection does not restart the count."""
    walker = [person(0.5, 0.3)]
    c = cfg(extra_person_seconds=4.0)
    passing = [seated()] * 2 + [seated() + walker] * 5 + [seated()] * 8
    assert run(CameraRules("cam1", [A, B], c), passing) == []
    staying = [seated()] * 2 + [seated() + walker] * 6 + [seated()] + [seated() + walker] * 6 + [seated()] * 8
    ups = run(CameraRules("cam1", [A, B], c), staying)
    assert [(a, e.rule, e.seat) for _, a, e in ups] == [
        ("opened", "extra_person", None), ("closed", "extra_person", None)]
    assert ups[0][2].start_s == pytest.approx(2 * 0.5)
    assert ups[0][0] >= 2 + 8  # reported once 4 s had passed, not before
    at_desk = [person(0.25, 0.9), person(0.78, 0.9)]
    visitor = [person(0.30, 0.95, 0.8)]  # stands beside A's evaluator
    brief = [at_desk] * 2 + [at_desk + visitor] * 6 + [at_desk] * 8
    assert run(CameraRules("cam1", [A, B], c), brief) == []
    stays = [at_desk] * 2 + [at_desk + visitor] * 12 + [at_desk] * 8
    ups = run(CameraRules("cam1", [A, B], c), stays)
    assert [(a, e.rule, e.seat) for _, a, e in ups] == [
        ("opened", "extra_person", "A"), ("closed", "extra_person", "A")]
    assert ups[0][2].start_s == pytest.approx(2 * 0.5)


def test_phone_lying_on_a_desk_counts_for_that_seat_only_when_configured() -> None:
    nobody_near = [person(0.25, 0.9)]  # seated at A; the phone lies on B's desk, out of reach
    frames = [nobody_near] * 2 + [[*nobody_near, phone(0.85, 0.8, 0.5)]] * 6 + [nobody_near] * 5
    assert [e.rule for _, _, e in run(CameraRules("cam1", [A, B], cfg()), frames)] == []
    ups = run(CameraRules("cam1", [A, B], cfg(desk_phone_min_score=0.45)), frames)
    assert [(a, e.rule, e.seat) for _, a, e in ups] == [("opened", "phone", "B"), ("closed", "phone", "B")]
    weak = run(CameraRules("cam1", [A, B], cfg(desk_phone_min_score=0.55)), frames)
    assert weak == []


def test_phone_event_reports_holders_seat() -> None:
    frames = [seated()] * 3 + [[*seated(), phone(0.78, 0.45, 0.55)]] * 6 + [seated()] * 5
    ups = run(CameraRules("cam1", [A, B], cfg()), frames)
    assert [(a, e.rule, e.seat) for _, a, e in ups] == [("opened", "phone", "B"), ("closed", "phone", "B")]


def test_seat_empty_after_n_seconds_starting_when_absence_started() -> None:
    only_b = [person(0.75, 0.8)]
    frames = [seated()] * 4 + [only_b] * 30 + [seated()] * 6  # A empty 2.0 s .. 16.5 s
    ups = run(CameraRules("cam1", [A, B], cfg(seat_empty_seconds=10.0)), frames)
    assert [(a, e.rule, e.seat) for _, a, e in ups] == [("opened", "seat_empty", "A"),
                                                       ("closed", "seat_empty", "A")]
    opened_at = ups[0][0] * 0.5
    ev = ups[0][2]
    assert ev.start_s == pytest.approx(2.0)
    assert opened_at == pytest.approx(12.0)  # 10 s after the absence started
    assert ev.end_s == pytest.approx(16.5)


def test_short_absence_raises_nothing() -> None:
    frames = [seated()] * 4 + [[person(0.75, 0.8)]] * 16 + [seated()] * 6  # 8 s
    assert run(CameraRules("cam1", [A, B], cfg(seat_empty_seconds=10.0)), frames) == []


def test_tamper_event_and_seat_rules_suspended_while_tampered() -> None:
    frames = [seated()] * 4 + [[]] * 30 + [seated()] * 6
    tamper = {i: {"covered": 0.9} for i in range(4, 34)}
    ups = run(CameraRules("cam1", [A, B], cfg()), frames, tamper=tamper)
    assert [(a, e.rule, e.kind) for _, a, e in ups] == [("opened", "camera_tamper", "covered"),
                                                       ("closed", "camera_tamper", "covered")]


def test_finish_closes_open_events() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    run(r, [[*seated(), phone(0.2, 0.7)]] * 6)
    ups = r.finish()
    assert [(u.action, u.event.rule, u.event.seat) for u in ups] == [("closed", "phone", "A")]
    assert ups[0].event.end_s == pytest.approx(2.5)
    assert r.open_events() == []


def test_flaky_detection_of_a_seated_person_is_not_an_empty_seat() -> None:
    # the detector sees the person at A in one frame out of four for 30 s
    frames = [seated() if i % 4 == 0 else [person(0.75, 0.8)] for i in range(60)]
    assert run(CameraRules("cam1", [A, B], cfg(seat_empty_seconds=10.0)), frames) == []


def test_tamper_onset_backdates_the_event_start_only() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    ups = []
    for i in range(12):
        t = i * 0.5
        tamper = {"frozen": 1.0} if i >= 6 else {}
        ups += r.update(t, seated(), tamper, tamper_onsets={"frozen": 0.5} if i >= 6 else {})
    ups += r.finish()
    assert [(u.action, u.event.kind) for u in ups] == [("opened", "frozen"), ("closed", "frozen")]
    assert ups[0].event.start_s == pytest.approx(0.5)  # not 3.0 (first report) nor 4.0 (debounce)
    assert ups[1].event.end_s == pytest.approx(5.5)


def test_an_onset_later_than_the_debounce_start_is_ignored() -> None:
    r = CameraRules("cam1", [A, B], cfg())
    ups = []
    for i in range(6):
        ups += r.update(i * 0.5, seated(), {"covered": 0.9}, tamper_onsets={"covered": 2.0})
    assert ups[0].event.start_s == pytest.approx(0.0)
