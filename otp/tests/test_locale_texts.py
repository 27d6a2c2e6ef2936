"""Languages (API.md section 15): the default texts of every locale and purpose, exactly as a phone shows them
and what they cost; the locale of a request, checked, normalised and resolved (its language, the workspace's
locale, then en); workspace texts and the order in which a text is chosen; what a voice call says."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from otp.models import OtpSession, SmsMessage, WorkspaceText
from otp.templating import TRANSACTION_DETAILS, default_texts, text_choose, voice_text
from otp.tests.helpers import deliver_and_read_code, later, request_otp, resend
from zeckta.locales import locale_lookup_chain, locale_normalise
from zeckta.sms_text import count_segments, render, template_errors, with_autofill
from zeckta.testing import DEST

# ruff: noqa: E501  (each expected SMS is one string, whole, as the phone shows it)

LOCALES = ["en", "fr", "pt", "es", "ar", "sw"]
PURPOSES = [
    "LOGIN",
    "PASSWORD_RESET",
    "TRANSACTION",
    "DEVICE_VERIFICATION",
    "EMAIL_VERIFICATION",
    "ACCOUNT_RECOVERY",
    "KYC_VERIFICATION",
]
PAYMENT = {"amount": "125.50", "currency": "GHS", "payee": "Acme Shop"}

# Every default text with the code 123456, 300 s of validity (5 minutes) and, for TRANSACTION_DETAILS, the
# amount "GHS 125.50" and the payee "Acme Shop": the whole SMS, its encoding and its segments.
EXPECTED = {
    ("en", "LOGIN"): ("Your login code is 123456. It expires in 5 minutes. Never share it with anyone.", "GSM-7", 1),
    ("en", "PASSWORD_RESET"): (
        "Your password reset code is 123456. It expires in 5 minutes. If you did not ask for it, ignore this message.",
        "GSM-7",
        1,
    ),
    ("en", "TRANSACTION"): (
        "Your transaction confirmation code is 123456. It expires in 5 minutes. Never share it with anyone.",
        "GSM-7",
        1,
    ),
    ("en", "TRANSACTION_DETAILS"): (
        "Your code to approve GHS 125.50 to Acme Shop is 123456. It expires in 5 minutes. Never share it with anyone.",
        "GSM-7",
        1,
    ),
    ("en", "DEVICE_VERIFICATION"): (
        "Your device verification code is 123456. It expires in 5 minutes. Never share it with anyone.",
        "GSM-7",
        1,
    ),
    ("en", "EMAIL_VERIFICATION"): ("Your email verification code is 123456. It expires in 5 minutes.", "GSM-7", 1),
    ("en", "ACCOUNT_RECOVERY"): (
        "Your account recovery code is 123456. It expires in 5 minutes. If you did not ask for it, contact support.",
        "GSM-7",
        1,
    ),
    ("en", "KYC_VERIFICATION"): (
        "Your identity verification code is 123456. It expires in 5 minutes. Never share it with anyone.",
        "GSM-7",
        1,
    ),
    ("fr", "LOGIN"): (
        "Votre code de connexion est 123456. Valable 5 minutes. Ne le partagez avec personne.",
        "GSM-7",
        1,
    ),
    ("fr", "PASSWORD_RESET"): (
        "Votre code pour changer de mot de passe est 123456. Valable 5 minutes. Si ce n'est pas vous, ignorez ce message.",
        "GSM-7",
        1,
    ),
    ("fr", "TRANSACTION"): (
        "Votre code de validation de la transaction est 123456. Valable 5 minutes. Ne le partagez avec personne.",
        "GSM-7",
        1,
    ),
    ("fr", "TRANSACTION_DETAILS"): (
        "Votre code pour payer GHS 125.50 à Acme Shop est 123456. Valable 5 minutes. Ne le partagez avec personne.",
        "GSM-7",
        1,
    ),
    ("fr", "DEVICE_VERIFICATION"): (
        "Votre code de vérification de l'appareil est 123456. Valable 5 minutes. Ne le partagez avec personne.",
        "GSM-7",
        1,
    ),
    ("fr", "EMAIL_VERIFICATION"): (
        "Votre code de vérification de l'adresse e-mail est 123456. Valable 5 minutes.",
        "GSM-7",
        1,
    ),
    ("fr", "ACCOUNT_RECOVERY"): (
        "Votre code de récupération du compte est 123456. Valable 5 minutes. Si ce n'est pas vous, contactez l'assistance.",
        "GSM-7",
        1,
    ),
    ("fr", "KYC_VERIFICATION"): (
        "Votre code de vérification d'identité est 123456. Valable 5 minutes. Ne le partagez avec personne.",
        "GSM-7",
        1,
    ),
    ("pt", "LOGIN"): ("Use o codigo 123456 para entrar. Expira em 5 minutos. Nunca o compartilhe.", "GSM-7", 1),
    ("pt", "PASSWORD_RESET"): (
        "Use o codigo 123456 para redefinir a senha. Expira em 5 minutos. Se nao pediu, ignore esta mensagem.",
        "GSM-7",
        1,
    ),
    ("pt", "TRANSACTION"): (
        "Use o codigo 123456 para confirmar a transacao. Expira em 5 minutos. Nunca o compartilhe.",
        "GSM-7",
        1,
    ),
    ("pt", "TRANSACTION_DETAILS"): (
        "Use o codigo 123456 para aprovar o pagamento de GHS 125.50 a Acme Shop. Expira em 5 minutos. Nunca o compartilhe.",
        "GSM-7",
        1,
    ),
    ("pt", "DEVICE_VERIFICATION"): (
        "Use o codigo 123456 para verificar o dispositivo. Expira em 5 minutos. Nunca o compartilhe.",
        "GSM-7",
        1,
    ),
    ("pt", "EMAIL_VERIFICATION"): ("Use o codigo 123456 para verificar o e-mail. Expira em 5 minutos.", "GSM-7", 1),
    ("pt", "ACCOUNT_RECOVERY"): (
        "Use o codigo 123456 para recuperar a conta. Expira em 5 minutos. Se nao pediu, fale com o suporte.",
        "GSM-7",
        1,
    ),
    ("pt", "KYC_VERIFICATION"): (
        "Use o codigo 123456 para confirmar a identidade. Expira em 5 minutos. Nunca o compartilhe.",
        "GSM-7",
        1,
    ),
    ("es", "LOGIN"): (
        "Tu codigo para iniciar sesion es 123456. Expira en 5 minutos. No lo compartas con nadie.",
        "GSM-7",
        1,
    ),
    ("es", "PASSWORD_RESET"): (
        "Tu codigo para restablecer la contraseña es 123456. Expira en 5 minutos. Si no lo pediste, ignora este mensaje.",
        "GSM-7",
        1,
    ),
    ("es", "TRANSACTION"): (
        "Tu codigo para confirmar la transaccion es 123456. Expira en 5 minutos. No lo compartas con nadie.",
        "GSM-7",
        1,
    ),
    ("es", "TRANSACTION_DETAILS"): (
        "Tu codigo para aprobar el pago de GHS 125.50 a Acme Shop es 123456. Expira en 5 minutos. No lo compartas con nadie.",
        "GSM-7",
        1,
    ),
    ("es", "DEVICE_VERIFICATION"): (
        "Tu codigo para verificar el dispositivo es 123456. Expira en 5 minutos. No lo compartas con nadie.",
        "GSM-7",
        1,
    ),
    ("es", "EMAIL_VERIFICATION"): (
        "Tu codigo para verificar tu correo electronico es 123456. Expira en 5 minutos.",
        "GSM-7",
        1,
    ),
    ("es", "ACCOUNT_RECOVERY"): (
        "Tu codigo para recuperar tu cuenta es 123456. Expira en 5 minutos. Si no lo pediste, contacta a soporte.",
        "GSM-7",
        1,
    ),
    ("es", "KYC_VERIFICATION"): (
        "Tu codigo para verificar tu identidad es 123456. Expira en 5 minutos. No lo compartas con nadie.",
        "GSM-7",
        1,
    ),
    ("ar", "LOGIN"): ("رمز الدخول: 123456. صالح لمدة 5 دقائق. لا تشاركه مع أحد.", "UCS-2", 1),
    ("ar", "PASSWORD_RESET"): ("رمز تغيير كلمة المرور: 123456. صالح لمدة 5 دقائق. إن لم تطلبه فتجاهله.", "UCS-2", 1),
    ("ar", "TRANSACTION"): ("رمز تأكيد العملية: 123456. صالح لمدة 5 دقائق. لا تشاركه مع أحد.", "UCS-2", 1),
    ("ar", "TRANSACTION_DETAILS"): (
        "رمز تأكيد دفع GHS 125.50 إلى Acme Shop: 123456. صالح لمدة 5 دقائق. لا تشاركه مع أحد.",
        "UCS-2",
        2,
    ),
    ("ar", "DEVICE_VERIFICATION"): ("رمز التحقق من الجهاز: 123456. صالح لمدة 5 دقائق. لا تشاركه مع أحد.", "UCS-2", 1),
    ("ar", "EMAIL_VERIFICATION"): ("رمز التحقق من البريد الإلكتروني: 123456. صالح لمدة 5 دقائق.", "UCS-2", 1),
    ("ar", "ACCOUNT_RECOVERY"): ("رمز استعادة الحساب: 123456. صالح لمدة 5 دقائق. إن لم تطلبه فاتصل بنا.", "UCS-2", 1),
    ("ar", "KYC_VERIFICATION"): ("رمز التحقق من الهوية: 123456. صالح لمدة 5 دقائق. لا تشاركه مع أحد.", "UCS-2", 1),
    ("sw", "LOGIN"): ("Msimbo wako wa kuingia ni 123456. Utaisha baada ya dakika 5. Usimpe mtu yeyote.", "GSM-7", 1),
    ("sw", "PASSWORD_RESET"): (
        "Msimbo wako wa kuweka upya nenosiri ni 123456. Utaisha baada ya dakika 5. Kama hukuuomba, puuza ujumbe huu.",
        "GSM-7",
        1,
    ),
    ("sw", "TRANSACTION"): (
        "Msimbo wako wa kuthibitisha muamala ni 123456. Utaisha baada ya dakika 5. Usimpe mtu yeyote.",
        "GSM-7",
        1,
    ),
    ("sw", "TRANSACTION_DETAILS"): (
        "Msimbo wako wa kuidhinisha malipo ya GHS 125.50 kwa Acme Shop ni 123456. Utaisha baada ya dakika 5. Usimpe mtu yeyote.",
        "GSM-7",
        1,
    ),
    ("sw", "DEVICE_VERIFICATION"): (
        "Msimbo wako wa kuthibitisha kifaa ni 123456. Utaisha baada ya dakika 5. Usimpe mtu yeyote.",
        "GSM-7",
        1,
    ),
    ("sw", "EMAIL_VERIFICATION"): (
        "Msimbo wako wa kuthibitisha barua pepe ni 123456. Utaisha baada ya dakika 5.",
        "GSM-7",
        1,
    ),
    ("sw", "ACCOUNT_RECOVERY"): (
        "Msimbo wako wa kurejesha akaunti ni 123456. Utaisha baada ya dakika 5. Kama hukuuomba, wasiliana na huduma kwa wateja.",
        "GSM-7",
        1,
    ),
    ("sw", "KYC_VERIFICATION"): (
        "Msimbo wako wa kuthibitisha utambulisho ni 123456. Utaisha baada ya dakika 5. Usimpe mtu yeyote.",
        "GSM-7",
        1,
    ),
}


def rendered(locale: str, name: str, code: str = "123456", validity_seconds: int = 300) -> str:
    extra = {"amount": "GHS 125.50", "payee": "Acme Shop"} if name == TRANSACTION_DETAILS else {}
    return render(default_texts()[locale][name], code=code, validity_seconds=validity_seconds, **extra)


def test_every_locale_has_a_text_for_every_purpose_and_every_text_is_a_valid_template():
    assert set(LOCALES) <= set(default_texts())
    for locale, texts in default_texts().items():
        assert set(texts) == {*PURPOSES, TRANSACTION_DETAILS}, locale
        for name, template in texts.items():
            assert template_errors(template, transaction=name == TRANSACTION_DETAILS) == [], (locale, name)
            assert ("<AMOUNT>" in template and "<PAYEE>" in template) == (name == TRANSACTION_DETAILS)
            assert "<MINUTES>" in template, (locale, name)
    assert set(EXPECTED) == {(locale, name) for locale in LOCALES for name in [*PURPOSES, TRANSACTION_DETAILS]}


@pytest.mark.parametrize(("locale", "name"), sorted(EXPECTED))
def test_each_default_text_renders_exactly_and_costs_what_it_should(locale, name):
    text, encoding, segments = EXPECTED[(locale, name)]
    assert rendered(locale, name) == text
    assert count_segments(text) == count_segments(text).__class__(encoding, segments)


@pytest.mark.parametrize("locale", [locale for locale in LOCALES if locale != "ar"])
@pytest.mark.parametrize("name", PURPOSES)
def test_latin_texts_stay_one_gsm7_segment_with_a_10_digit_code_and_both_autofill_lines(locale, name):
    code = "1234567890"
    sms = with_autofill(
        rendered(locale, name, code=code, validity_seconds=600),
        code=code,
        app_hash="FA+9qCX9VSu",
        web_otp_domain="example.com",
    )
    assert count_segments(sms) == count_segments(sms).__class__("GSM-7", 1), (len(sms), sms)


@pytest.mark.parametrize("locale", [locale for locale in LOCALES if locale != "ar"])
def test_a_transaction_text_with_a_short_payee_stays_one_gsm7_segment_with_autofill(locale):
    sms = with_autofill(
        rendered(locale, TRANSACTION_DETAILS, code="1234567890", validity_seconds=600),
        code="1234567890",
        app_hash="FA+9qCX9VSu",
        web_otp_domain="example.com",
    )
    assert count_segments(sms) == count_segments(sms).__class__("GSM-7", 1)


@pytest.mark.parametrize("name", PURPOSES)
def test_arabic_texts_fit_one_ucs2_segment_with_a_6_digit_code(name):
    assert count_segments(rendered("ar", name)) == count_segments("").__class__("UCS-2", 1)


# --- Tags ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "normal"),
    [
        ("en", "en"),
        ("FR", "fr"),
        ("pt-br", "pt-BR"),
        ("PT-BR", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("sr-latn-rs", "sr-Latn-RS"),
        ("de-DE-1996", "de-DE-1996"),
        ("zh-yue-HK", "zh-yue-HK"),
        ("en-US-u-ca-gregory", "en-US-u-ca-gregory"),
        ("sw-KE-x-mpesa", "sw-KE-x-mpesa"),
    ],
)
def test_well_formed_tags_are_normalised(tag, normal):
    assert locale_normalise(tag) == normal


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "e",
        "english",
        "pt_BR",
        "fr-",
        "-fr",
        "fr--CA",
        "x-private",
        "fr-C",
        "en-USA1",
        "12",
        "ar-EG-" + "a" * 40,
        "fr CA",
        "fré",
    ],
)
def test_malformed_tags_are_refused(tag):
    assert locale_normalise(tag) is None


def test_a_tag_is_truncated_as_rfc_4647_lookup_does():
    assert locale_lookup_chain("zh-Hant-TW") == ["zh-Hant-TW", "zh-Hant", "zh"]
    assert locale_lookup_chain("en-US-u-ca-gregory") == ["en-US", "en"]


# --- Which text, in which language -----------------------------------------------------------------


def choose(requested=None, *, workspace_locale="en", workspace_template="", texts=None, purpose="LOGIN", **extra):
    return text_choose(
        purpose=purpose,
        requested_locale=requested,
        workspace_locale=workspace_locale,
        workspace_template=workspace_template,
        workspace_texts=texts or {},
        transaction=extra.pop("transaction", False),
        **extra,
    )


def test_a_tag_without_texts_falls_back_to_its_language_then_the_workspace_locale_then_en():
    assert choose("pt-BR").locale == "pt"
    assert choose("pt-BR").template == default_texts()["pt"]["LOGIN"]
    assert choose("xx", workspace_locale="sw").locale == "sw"
    assert choose("xx-YY", workspace_locale="yo").locale == "en"
    assert choose(None, workspace_locale="fr-CA").locale == "fr"
    assert choose(None).template == default_texts()["en"]["LOGIN"]


def test_a_workspace_text_wins_for_its_purpose_and_language_and_serves_the_regions():
    texts = {("LOGIN", "pt"): "Acme: <OTP>", ("LOGIN", "sw-KE"): "Acme KE: <OTP>"}
    assert choose("pt-BR", texts=texts) == choose("pt", texts=texts)
    assert choose("pt-BR", texts=texts).template == "Acme: <OTP>"
    assert choose("sw-KE", texts=texts).template == "Acme KE: <OTP>"
    assert choose("sw-KE", texts=texts).locale == "sw-KE"
    assert choose("sw", texts=texts).template == default_texts()["sw"]["LOGIN"]  # a region's text is not its language's
    assert choose("pt", texts=texts, purpose="KYC_VERIFICATION").template == default_texts()["pt"]["KYC_VERIFICATION"]
    # A language only the workspace has texts for resolves to it.
    assert choose("yo", texts={("LOGIN", "yo"): "Koodu: <OTP>"}).locale == "yo"


def test_the_workspace_template_serves_its_own_language_only():
    legacy = {"workspace_locale": "fr", "workspace_template": "Acme : <OTP>"}
    assert choose(None, **legacy).template == "Acme : <OTP>"
    assert choose("fr-CA", **legacy) == choose("fr-CA", **legacy).__class__("fr-CA", "Acme : <OTP>")
    assert choose("es", **legacy).template == default_texts()["es"]["LOGIN"]
    # A workspace text for the purpose and language comes before it.
    assert choose("fr", texts={("LOGIN", "fr"): "Acme FR <OTP>"}, **legacy).template == "Acme FR <OTP>"
    # An unconfigured workspace (locale en) keeps its template for every request in English, as before.
    assert choose("en-GB", workspace_template="Acme: <OTP>").template == "Acme: <OTP>"


def test_the_request_template_wins_and_the_locale_is_still_resolved():
    chosen = choose("pt-BR", message_template="<OTP>", texts={("LOGIN", "pt"): "Acme: <OTP>"})
    assert (chosen.locale, chosen.template) == ("pt", "<OTP>")


def test_transaction_texts_name_amount_and_payee_only_when_the_request_carries_them():
    texts = {("TRANSACTION", "es"): "Paga <AMOUNT> a <PAYEE>: <OTP>"}
    assert choose("es", texts=texts, purpose="TRANSACTION", transaction=True).template == texts[("TRANSACTION", "es")]
    assert choose("es", texts=texts, purpose="TRANSACTION").template == default_texts()["es"]["TRANSACTION"]
    assert choose("fr", purpose="TRANSACTION", transaction=True).template == default_texts()["fr"][TRANSACTION_DETAILS]


# --- Through the API -------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_a_request_sends_the_text_of_its_locale_on_both_paths(api, otp_path, sms_outbox, locale):
    session_id = request_otp(api, DEST, locale=locale).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    text, encoding, segments = EXPECTED[(locale, "LOGIN")]
    assert sms_outbox[0].text == text.replace("123456", code)
    sms = SmsMessage.objects.get(session__public_id=session_id)
    assert (sms.encoding, sms.segments, sms.units) == (encoding, segments, segments)
    assert OtpSession.objects.get(public_id=session_id).locale == locale


@pytest.mark.parametrize("locale", LOCALES)
def test_a_transaction_request_names_amount_and_payee_in_its_language(api, otp_path, sms_outbox, locale):
    response = request_otp(api, DEST, purpose="TRANSACTION", transaction=PAYMENT, locale=locale)
    code = deliver_and_read_code(response.json()["data"]["sessionId"])
    assert sms_outbox[0].text == EXPECTED[(locale, TRANSACTION_DETAILS)][0].replace("123456", code)


def test_a_regional_tag_gets_its_language_and_the_session_keeps_the_resolved_tag(api, otp_path, sms_outbox):
    session_id = request_otp(api, DEST, locale="PT-br").json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert sms_outbox[0].text == EXPECTED[("pt", "LOGIN")][0].replace("123456", code)
    assert OtpSession.objects.get(public_id=session_id).locale == "pt"


def test_an_unknown_language_gets_the_workspace_locale_then_en(api, workspace, otp_path, sms_outbox):
    workspace.locale = "sw"
    workspace.save()
    first = request_otp(api, DEST, locale="xx").json()["data"]["sessionId"]
    assert OtpSession.objects.get(public_id=first).locale == "sw"
    workspace.locale = "yo"  # no texts either
    workspace.save()
    second = request_otp(api, "+233244000002", locale="xx").json()["data"]["sessionId"]
    assert OtpSession.objects.get(public_id=second).locale == "en"
    code = deliver_and_read_code(second)
    assert sms_outbox[-1].text == EXPECTED[("en", "LOGIN")][0].replace("123456", code)


@pytest.mark.parametrize("tag", ["pt_BR", "english", "fr-", "x-private", 42, "", "a" * 36])
def test_a_malformed_locale_is_a_validation_error_and_sends_nothing(api, otp_path, tag):
    response = request_otp(api, DEST, locale=tag)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR" and list(body["errors"]) == ["locale"]
    assert not OtpSession.objects.exists() and not SmsMessage.objects.exists()


def test_a_null_locale_is_the_field_left_out(api, workspace, otp_path):
    workspace.locale = "fr"
    workspace.save()
    session_id = request_otp(api, DEST, locale=None).json()["data"]["sessionId"]
    assert OtpSession.objects.get(public_id=session_id).locale == "fr"


def test_a_workspace_text_is_sent_for_its_purpose_and_language(api, workspace, otp_path, sms_outbox):
    WorkspaceText.objects.create(workspace=workspace, purpose="LOGIN", locale="fr", text="Acme : <OTP> (<MINUTES> min)")
    session_id = request_otp(api, DEST, locale="fr-CA").json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert sms_outbox[0].text == f"Acme : {code} (5 min)"


def test_a_resend_says_the_same_in_the_same_language(api, otp_path, sms_outbox):
    session_id = request_otp(api, DEST, locale="es").json()["data"]["sessionId"]
    deliver_and_read_code(session_id)
    with later(31):
        assert resend(api, session_id).status_code == 200
    code = deliver_and_read_code(session_id)
    assert sms_outbox[-1].text == EXPECTED[("es", "LOGIN")][0].replace("123456", code)


# --- Voice -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "said"),
    [
        ("en", "Your verification code is: 4, 8, 2, 9, 1, 3."),
        ("fr", "Votre code de vérification est : 4, 8, 2, 9, 1, 3."),
        ("pt-BR", "O seu código de verificação é: 4, 8, 2, 9, 1, 3."),
        ("es", "Tu código de verificación es: 4, 8, 2, 9, 1, 3."),
        ("ar", "رمز التحقق الخاص بك هو: 4، 8، 2، 9، 1، 3."),
        ("sw", "Msimbo wako wa uthibitisho ni: 4, 8, 2, 9, 1, 3."),
        ("yo", "Your verification code is: 4, 8, 2, 9, 1, 3."),
    ],
)
def test_a_call_says_the_code_digit_by_digit_in_the_sessions_language(locale, said):
    assert voice_text(code="482913", locale=locale) == said


# --- Admin -----------------------------------------------------------------------------------------


def test_staff_keep_workspace_texts_in_the_admin_with_their_cost_shown(admin_client, workspace):
    add = reverse("admin:otp_workspacetext_add")
    data = {
        "workspace": workspace.pk,
        "purpose": "LOGIN",
        "locale": "PT-br",
        "text": "Acme: <OTP>. Valido <MINUTES> min.",
    }
    assert admin_client.post(add, data).status_code == 302
    text = WorkspaceText.objects.get()
    assert (text.locale, text.text) == ("pt-BR", "Acme: <OTP>. Valido <MINUTES> min.")
    page = admin_client.get(reverse("admin:otp_workspacetext_change", args=[text.pk])).content.decode()
    assert "Acme: 482913. Valido 5 min." in page and "GSM-7, 1 segment(s)" in page
    assert escape(default_texts()["pt"]["LOGIN"]) in page  # the service's own text, beside it
    listed = admin_client.get(reverse("admin:otp_workspacetext_changelist"), {"locale": "pt-BR", "q": "Acme"})
    assert "GSM-7, 1 segment" in listed.content.decode() and "pt-BR" in listed.content.decode()
    # The same purpose and locale again is refused.
    again = admin_client.post(add, {**data, "locale": "pt-br"})
    assert again.status_code == 200 and WorkspaceText.objects.count() == 1


@pytest.mark.parametrize(
    ("purpose", "locale", "text", "field", "message"),
    [
        ("LOGIN", "fr", "Pas de code", "text", "exactly once"),
        ("LOGIN", "fr", "<OTP> <SECRET>", "text", "Unknown placeholder"),
        ("LOGIN", "fr", "<OTP> pour <AMOUNT>", "text", "Unknown placeholder"),
        ("LOGIN", "fr_FR", "<OTP>", "locale", "BCP 47"),
        ("LOGIN", "fr", "<OTP>" + "x" * 156, "text", "160"),
    ],
)
def test_the_admin_refuses_a_bad_workspace_text(admin_client, workspace, purpose, locale, text, field, message):
    data = {"workspace": workspace.pk, "purpose": purpose, "locale": locale, "text": text}
    response = admin_client.post(reverse("admin:otp_workspacetext_add"), data)
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert not WorkspaceText.objects.exists()


def test_a_transaction_text_may_name_amount_and_payee(admin_client, workspace):
    data = {
        "workspace": workspace.pk,
        "purpose": "TRANSACTION",
        "locale": "sw",
        "text": "Lipa <AMOUNT> kwa <PAYEE>: <OTP>",
    }
    assert admin_client.post(reverse("admin:otp_workspacetext_add"), data).status_code == 302
    text = WorkspaceText.objects.get()
    page = admin_client.get(reverse("admin:otp_workspacetext_change", args=[text.pk])).content.decode()
    assert "Lipa GHS 125.50 kwa Acme Shop: 482913" in page
