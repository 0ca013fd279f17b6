"""The pages' languages: which one a reader gets, and catalogues that lack nothing.

The catalogue tests extract the messages from the source as ``pybabel extract -F babel.cfg``
does, so a text marked for translation and left out of a catalogue fails here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from exchange.web import languages

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [code for code in languages.LANGUAGES if code != languages.SOURCE]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
TAG = re.compile(r"<[^>]+>")


def source_messages() -> dict[str, str | tuple[str, ...]]:
    """Every message marked in the source, keyed by its msgid."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: dict[str, str | tuple[str, ...]] = {}
    for _, _, message, _, _ in extract_from_dir(ROOT, method_map, options_map):
        key = message if isinstance(message, str) else message[0]
        found[key] = message
    return found


def catalogue(language: str) -> Catalog:
    with (ROOT / "exchange" / "locale" / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=language)


def entries(language: str) -> dict[str, Message]:
    return {str(m.id if isinstance(m.id, str) else m.id[0]): m for m in catalogue(language) if m.id}


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_marked_message_is_translated(language: str) -> None:
    have = entries(language)
    missing = sorted(set(source_messages()) - set(have))
    assert not missing, f"{language} lacks {missing} (see docs/languages.md)"
    for key, message in have.items():
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(forms), f"{language}: {key!r} is not translated"
        assert not message.fuzzy, f"{language}: {key!r} is fuzzy"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_placeholders_and_markup(language: str) -> None:
    for key, message in entries(language).items():
        wanted = set(PLACEHOLDER.findall(key))
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        for i, form in enumerate(forms):
            found = set(PLACEHOLDER.findall(form))
            # A plural form may say its number in words ("مرتان", "une fois"); the others not.
            last = i == len(forms) - 1
            expected = wanted if last or not message.pluralizable else wanted - {"count"}
            assert expected <= found <= wanted, f"{language}: {key!r} form {i}: {form!r}"
            assert sorted(TAG.findall(form)) == sorted(TAG.findall(key)), (language, key, form)


@pytest.mark.parametrize("language", TRANSLATED)
def test_no_stale_entries_linger(language: str) -> None:
    stale = sorted(set(entries(language)) - set(source_messages()))
    assert not stale, f"{language} keeps messages the source no longer has: {stale}"


def test_no_marked_text_hides_inside_an_f_string() -> None:
    # pybabel does not look inside f-strings: text marked there never reaches a catalogue, and
    # the page shows it in English whatever the reader's language.
    marking = {"gettext", "ngettext", "N_", "_"}
    hidden = []
    for path in sorted((ROOT / "exchange").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.JoinedStr):
                continue
            for call in ast.walk(node):
                marked = isinstance(call, ast.Call) and getattr(call.func, "id", None) in marking
                if marked and any(isinstance(a, ast.Constant) for a in call.args):
                    hidden.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert hidden == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_plural_forms_are_the_languages_own(language: str) -> None:
    """Arabic has six plural forms (zero, one, two, few, many, other), French three."""
    rule = get_plural(language)
    assert catalogue(language).plural_forms == rule.plural_forms
    for message in catalogue(language):
        if message.id and message.pluralizable:
            assert len(message.string) == rule.num_plurals, message.id
    assert rule.num_plurals == {"ar": 6, "fr": 3}[language]


def test_arabic_plurals_choose_the_right_form() -> None:
    with languages_of("ar"):
        assert languages.ngettext("%(count)s time", "%(count)s times", 1) == "مرة واحدة"
        assert languages.ngettext("%(count)s time", "%(count)s times", 2) == "مرتان"
        assert languages.ngettext("%(count)s time", "%(count)s times", 5) == "%(count)s مرات"
        assert languages.ngettext("%(count)s time", "%(count)s times", 11) == "%(count)s مرة"


@contextmanager
def languages_of(language: str) -> Iterator[None]:
    """A request's language outside a request, as the middleware would set it."""
    token = languages._reader.set(languages.Reader(language, "/"))
    try:
        yield
    finally:
        languages._reader.reset(token)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ar", "ar"),
        ("ar-MA,ar;q=0.9,fr;q=0.8", "ar"),
        ("fr-FR,fr;q=0.9,en;q=0.5", "fr"),
        ("de-DE,fr;q=0.4,ar;q=0.6", "ar"),  # by weight, not by order
        ("en;q=0,fr", "fr"),  # q=0 means "not this one"
        ("de, es", "en"),  # none spoken here: the instance's default
        ("", "en"),
        ("*", "en"),
        ("ar;q=zz, fr", "fr"),  # a broken weight counts for nothing
    ],
)
def test_the_browsers_languages_are_negotiated(header: str, expected: str) -> None:
    assert languages.negotiate(chosen=None, remembered=None, accept=header, default="en") == (
        expected,
        False,
    )


def test_a_choice_beats_the_cookie_which_beats_the_browser() -> None:
    negotiate = languages.negotiate
    assert negotiate(chosen="fr", remembered="ar", accept="en", default="en") == ("fr", True)
    assert negotiate(chosen=None, remembered="ar", accept="fr", default="en") == ("ar", False)
    assert negotiate(chosen="xx", remembered="<b>", accept="zz", default="fr") == ("fr", False)


def test_dates_and_numbers_in_arabic_use_latin_digits_and_say_utc() -> None:
    moment = datetime(2026, 12, 1, 14, 5, tzinfo=UTC)
    shown = languages.date_time(moment, "ar")
    assert shown.endswith("UTC")
    assert "2026" in shown
    assert "14:05" in shown
    assert not re.search("[٠-٩]", shown)
    assert languages.number(1234567, "ar") == "1,234,567"
    assert languages.date_time(moment, "fr") == "1 décembre 2026, 14:05 UTC"
    assert languages.date_time(moment.timestamp(), "en") == "December 1, 2026, 14:05 UTC"


def test_settings_text_falls_back_to_english_then_to_what_is_given() -> None:
    text = {"en": "Apply", "fr": "Demander"}
    assert languages.localised(text, "fr") == "Demander"
    assert languages.localised(text, "ar") == "Apply"
    assert languages.localised({"ar": "طلب"}, "fr", otherwise="Apply") == "Apply"
    assert languages.localised("Apply", "ar") == "Apply"


def test_the_switch_keeps_the_page_and_stays_on_this_site() -> None:
    assert languages.switch("/grant?consumer=a&lang=fr&x=", "ar") == "/grant?consumer=a&x=&lang=ar"
    assert [href for _, _, href, _ in languages.choices({"here": "//evil.example/"})] == [
        "/?lang=en",
        "/?lang=fr",
        "/?lang=ar",
    ]
