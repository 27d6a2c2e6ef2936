"""bench/pumping.py's own parts, without the service: the traffic it plans is issue 18's, the clock it
compresses is every duration of the guard, the sink hands each user their code, and the table counts what
it says it counts. (The replay itself is `make pumping`: minutes of real processes, not a test.)"""

import http.client
import json
import random
import sys
import uuid
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pumping  # noqa: E402

from workspaces.models import FRAUD_SECONDS_FIELDS, Workspace  # noqa: E402


@pytest.fixture(scope="module")
def fast():
    return pumping.fast_plan(random.Random(18), b_requests=2000)


def by_population(plan):
    events: dict[str, list] = {}
    for event in plan.events:
        events.setdefault(event.population, []).append(event)
    return events


def valid_mobile(dest: str) -> bool:
    number = phonenumbers.parse(dest)
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in pumping.MOBILE_TYPES


def test_attack_a_is_a_burst_over_the_sequential_numbers_of_one_range_of_a_legitimate_country(fast):
    attack = by_population(fast)["a"]
    assert len(attack) == 1000
    assert {event.burst for event in attack} == {True}
    assert {pumping.number_range(event.dest) for event in attack} == {"+233231234"}
    assert [event.dest for event in attack] == [f"+233231234{i:03d}" for i in range(1000)]
    assert all(valid_mobile(event.dest) for event in attack)


def test_attack_b_is_2000_requests_at_3_a_second_over_200_ranges_of_a_country_no_user_has(fast):
    events = by_population(fast)
    attack = events["b"]
    assert len(attack) == 2000
    assert len({event.dest for event in attack}) == 2000
    assert {pumping.region_of(event.dest) for event in attack} == {"UZ"}
    per_range = Counter(pumping.number_range(event.dest) for event in attack)
    assert len(per_range) == 200 and set(per_range.values()) == {10}
    gaps = {round(b.at - a.at, 6) for a, b in zip(attack, attack[1:], strict=False)}
    assert gaps == {round(1 / 3, 6)}
    assert "UZ" not in {pumping.region_of(event.dest) for event in events["legit"]}
    assert all(valid_mobile(event.dest) for event in attack)


def test_legitimate_users_ask_5_a_second_over_three_countries_and_three_in_four_enter_the_code(fast):
    legit = by_population(fast)["legit"]
    assert len(legit) / fast.end == pytest.approx(5, rel=0.1)
    assert Counter(pumping.region_of(event.dest) for event in legit).keys() == {"GH", "NG", "KE"}
    delays = [event.verify_after for event in legit if event.verify_after is not None]
    assert len(delays) / len(legit) == pytest.approx(0.75, abs=0.03)
    assert 5 <= min(delays) and max(delays) <= 90
    assert all(valid_mobile(event.dest) for event in legit)
    attack_ranges = {pumping.number_range(e.dest) for e in fast.events if e.population != "legit"}
    assert not attack_ranges & {pumping.number_range(event.dest) for event in legit}
    # The users are there before the burst and after the last attack request.
    assert min(event.at for event in legit) < pumping.ATTACK_A_AT_SECONDS
    assert max(event.at for event in legit) > max(e.at for e in fast.events if e.population == "b") + 100


def test_attack_c_is_one_request_a_minute_to_one_range_for_a_day():
    attack = pumping.slow_plan(random.Random(18), hours=24).events
    assert len(attack) == 1440
    assert [event.at for event in attack] == [i * 60.0 for i in range(1440)]
    assert {pumping.number_range(event.dest) for event in attack} == {"+254712123"}
    assert len({event.dest for event in attack[:1000]}) == 1000  # no number twice before all had one


def test_the_mimic_enters_one_code_in_five(fast):
    attack = by_population(fast)["d"]
    assert len(attack) == 300
    assert {pumping.region_of(event.dest) for event in attack} == {"NG"}
    entered = sum(event.verify_after is not None for event in attack)
    assert entered / len(attack) == pytest.approx(0.2, abs=0.06)


def test_the_compressed_clock_divides_every_duration_of_the_guard_and_says_which_it_held_at_the_floor():
    policy, floored = pumping.compressed_policy(2)
    for name in FRAUD_SECONDS_FIELDS:
        assert policy[name] == Workspace._meta.get_field(name).default // 2
    assert policy["otp_validity_seconds"] == 150 and policy["destination_window_seconds"] == 300
    assert floored == []

    policy, floored = pumping.compressed_policy(180)
    assert policy["fraud_range_conversion_window_seconds"] == 480  # a day in 8 minutes
    assert policy["fraud_conversion_judged_after_seconds"] == 1  # 120 / 180 held at the 1 s floor
    assert policy["otp_validity_seconds"] == 60  # an SMS behind a burst in the shared outbox is still sent
    assert any(note.startswith("fraud_conversion_judged_after_seconds") for note in floored)


def post_sms(port: int, body: dict, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST", "/sms", json.dumps(body), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
        response = conn.getresponse()
        assert "id" in json.loads(response.read())
        return response.status
    finally:
        conn.close()


def test_the_sink_hands_each_user_the_code_sent_to_them_and_counts_retries_once():
    sink = pumping.Sink("sink-token")
    port = sink.start()
    try:
        sms = {"to": "+233201234567", "from": "FASTENF", "text": "Your login code is 482913.", "reference": "r1"}
        assert post_sms(port, sms, "sink-token") == 200
        assert post_sms(port, sms, "sink-token") == 200  # a retry: the same reference
        assert post_sms(port, {**sms, "to": "+233201234568", "reference": "r2"}, "wrong") == 200
        assert sink.code_after("FASTENF", "+233201234567", 0) == "482913"
        assert sink.code_after("FASTSHA", "+233201234567", 0) is None  # another workspace's sender
        assert sink.code_after("FASTENF", "+233201234567", 2e9) is None  # not one sent after the request
        assert (sink.posts, sink.duplicates, sink.bad_auth) == (3, 1, 1)
        assert sorted(to for to, _ in sink.messages_from("FASTENF")) == ["+233201234567", "+233201234568"]
    finally:
        sink.stop()


def lane_with(answers, *, mode="enforce"):
    plan = pumping.Plan(events=[pumping.Event(0, a["population"], a["dest"]) for a in answers], end=60, described={})
    lane = pumping.Lane(phase="fast", mode=mode, k=2, plan=plan, sender="FASTENF")
    lane.answers = answers
    return lane


def answer(population, dest, at, status=200, code=""):
    return {"population": population, "dest": dest, "at": at, "status": status, "code": code, "reused": False}


def test_the_summary_counts_sms_at_the_sink_refusals_and_the_first_block_of_each_population():
    answers = [answer("a", f"+233231234{i:03d}", 10 + i * 0.01) for i in range(10)]
    answers += [answer("a", f"+233231234{i:03d}", 10.2, 403, "DESTINATION_BLOCKED") for i in range(10, 15)]
    answers += [answer("legit", "+233201234567", 5), answer("legit", "+254712000001", 12, 429, "RATE_LIMITED")]
    lane = lane_with(answers)
    sink = pumping.Sink("t")
    for a in answers:
        if a["status"] == 200:
            sink.receive(
                {"to": a["dest"], "from": "FASTENF", "text": "code 123456", "reference": str(uuid.uuid4())}, ""
            )
    blocks = [
        {"scope": "range", "value": "+233231234", "rule": "range_velocity", "mode": "enforce", "at": 10.15,
         "ends": 1000.0, "lifted": None, "evidence": {"sessions": 10, "converted": 0, "numbers": 10}},
    ]  # fmt: skip
    summary = pumping.summarise(lane, sink, blocks)
    assert summary["a"]["sms"] == 10 and summary["a"]["refused"] == 5
    assert summary["a"]["first_block_real_seconds"] == pytest.approx(0.15)
    assert summary["a"]["covered_by_a_block"] == 5
    assert summary["a"]["blocks"] == ["range_velocity (range +233231234)"]
    assert summary["legit"]["sms"] == 1 and summary["legit"]["refused"] == 0
    assert summary["legit"]["other"] == {"429 RATE_LIMITED": 1}
    assert summary["legit"]["blocks"] == [] and summary["legit"]["first_block_real_seconds"] is None


def test_the_table_marks_a_missed_target_and_puts_both_modes_side_by_side():
    blocks = [{"rule": "range_velocity", "scope": "range", "value": "+233231234", "at": 10.0,
               "evidence": {"sessions": 10, "converted": 0, "numbers": 10}}]  # fmt: skip
    populations = {
        "a": {"sms": 11, "refused": 989, "other": {}, "covered_by_a_block": 989, "first_block_real_seconds": 0.5,
              "blocks": ["range_velocity (range +233231234)"], "verifies": {}},
        "legit": {"requests": 100, "sms": 100, "refused": 0, "other": {}, "covered_by_a_block": 0,
                  "first_block_real_seconds": None, "blocks": [], "verifies": {"APPROVED": 75}},
    }  # fmt: skip
    lanes = [
        {"name": f"fast-{mode}", "phase": "fast", "mode": mode, "k": 2.0, "slug": f"pumping-fast-{mode}",
         "requests": 1100, "sms": 111, "late_p99": 0.1, "late_max": 0.2, "blocks": blocks,
         "populations": populations}
        for mode in ("enforce", "shadow")
    ]  # fmt: skip
    report = {
        "when": "2026-12-07T11:00:00Z", "git": "abc", "guard": "present", "machine": {"cpus": 2},
        "k": {"fast": 2.0}, "k_why": {"fast": "why"}, "floored": [], "modes": ["enforce", "shadow"],
        "described": {"a": "burst", "legit": "users"}, "lanes": lanes,
        "sink": {"posts": 222, "duplicates": 0, "bad_auth": 0}, "drain_seconds": 1.0, "errors": [],
        "targets_met": False,
    }  # fmt: skip
    markdown = pumping.render(report)
    assert "| (a) burst | 11 | 989 | 0.5 s | 0.5 s | range_velocity (range +233231234) | - | <= 10 SMS | **no** |" in (
        markdown
    )
    assert "| fast | range_velocity | range | +233231234 | 20.0 s | 20.0 s | 10, 0, 10 |" in markdown
    assert "## shadow" in markdown and "Targets: **missed**." in markdown
