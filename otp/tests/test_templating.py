import re

from hypothesis import given
from hypothesis import strategies as st

from otp.crypto import generate_code
from otp.serializers import CODE_RE
from zeckta.sms_text import (
    GSM7_BASIC,
    GSM7_CONCAT,
    GSM7_EXTENSION,
    GSM7_SINGLE,
    UCS2_CONCAT,
    UCS2_SINGLE,
    SegmentInfo,
    _pack,
    count_segments,
    render,
    template_errors,
)


def test_plain_gsm_text_fills_one_segment_up_to_160_characters():
    assert count_segments("a" * 160) == count_segments("a" * 160).__class__("GSM-7", 1)
    assert count_segments("a" * 161).segments == 2
    assert count_segments("a" * 306).segments == 2 and count_segments("a" * 307).segments == 3


def test_extension_characters_take_two_septets():
    assert count_segments("€" * 80).segments == 1 and count_segments("€" * 80).encoding == "GSM-7"
    assert count_segments("€" * 81).segments == 2
    assert count_segments("[" + "a" * 159).segments == 2
    # An escaped character is never split across two parts: 152 septets + one 2-septet char -> 2 parts.
    assert count_segments("a" * 152 + "{" + "a" * 10).segments == 2
    assert count_segments("a" * 152 + "{" + "a" * 152).segments == 3


def test_any_character_outside_gsm7_makes_the_whole_message_ucs2():
    assert count_segments("ж" * 70).segments == 1 and count_segments("ж" * 70).encoding == "UCS-2"
    assert count_segments("ж" * 71).segments == 2
    assert count_segments("a" * 133 + "ж").segments == 2 and count_segments("a" * 134 + "ж").segments == 3
    assert count_segments("ж" * 134).segments == 2 and count_segments("ж" * 135).segments == 3
    assert count_segments("😀" * 35).segments == 1 and count_segments("😀" * 36).segments == 2


def test_a_text_around_one_sms_is_counted_as_packing_each_character_would():
    # count_segments counts a text that fits one SMS whole: around that limit, in either encoding, it must
    # agree with packing every character by its cost.
    texts = [
        one * count + two * extra
        for one, two in (("a", "€"), ("€", "a"), ("ж", "😀"), ("😀", "ж"), ("a", "ж"))
        for count in range(0, 170)
        for extra in range(4)
    ]
    for text in texts:
        gsm = all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)
        costs = [2 if (ch in GSM7_EXTENSION if gsm else ord(ch) > 0xFFFF) else 1 for ch in text]
        single, concat = (GSM7_SINGLE, GSM7_CONCAT) if gsm else (UCS2_SINGLE, UCS2_CONCAT)
        expected = SegmentInfo("GSM-7" if gsm else "UCS-2", _pack(costs, single, concat))
        assert count_segments(text) == expected, text


def test_gsm_specials_are_gsm():
    assert count_segments("Ça coûte 5€ @ Ñandú: ¿ok? ß").encoding == "UCS-2"  # û is not in GSM 03.38
    assert count_segments("Ça coute 5€ @ Ñandu: ¿ok? ß").encoding == "GSM-7"


@given(st.text(max_size=200))
def test_rendering_never_evaluates_and_places_the_code_exactly_once(prefix):
    template = prefix.replace("<OTP>", "") + "<OTP>"
    if template_errors(template):
        return
    code = "8675309"
    text = render(template, code=code, validity_seconds=300)
    expected = template.replace("<MINUTES>", "5").replace("<OTP>", code)
    assert text == expected


@given(st.sampled_from(["{code.__class__}", "{{settings.SECRET_KEY}}", "%(code)s", "{0}", "${code}", "{% debug %}"]))
def test_format_and_engine_syntax_is_kept_literally(payload):
    text = render(f"{payload} <OTP>", code="123456", validity_seconds=600)
    assert text == f"{payload} 123456"


@given(st.integers(min_value=4, max_value=10))
def test_codes_are_ascii_digits_of_the_policy_length(length):
    code = generate_code(length)
    assert re.fullmatch(rf"[0-9]{{{length}}}", code)


@given(st.text())
def test_the_code_validator_accepts_only_ascii_digit_strings_of_4_to_10(value):
    accepted = CODE_RE.fullmatch(value) is not None
    assert accepted == (4 <= len(value) <= 10 and all(ch in "0123456789" for ch in value))


def test_the_code_validator_refuses_lookalikes():
    for value in ["123456\n", "١٢٣٤٥٦", "１２３４５６", " 123456", "12345６", ""]:
        assert CODE_RE.fullmatch(value) is None


def test_template_rules():
    assert template_errors("Your code: <OTP>") == []
    assert template_errors("<OTP> in <MINUTES> minutes, <MINUTES>!") == []
    assert template_errors("none")
    assert template_errors("<OTP><OTP>")
    assert template_errors("<OTP> <CODE>")
    assert template_errors("<OTP>\x00")
    assert template_errors("<OTP>" + "x" * 156)
    assert template_errors("<OTP>" + "x" * 155) == []
