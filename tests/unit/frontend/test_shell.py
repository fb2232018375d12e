"""Unit tests for pybuild.frontend.shell beyond BuildKit's own vectors (tests/conformance/test_buildkit_shell.py).

Expected values were checked against BuildKit's lexer (lex.go at the commit in shared/conformance/buildkit/SOURCES.md).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.errors import PybuildError
from pybuild.frontend.shell import (
    MAX_NESTING,
    Expansion,
    Lexer,
    ShellError,
    env_from_list,
    go_quote,
    pattern_to_regex,
)

ENV = {"PWD": "/home", "EMPTY": "", "SP": "a  b", "V": "banana"}


def word(text: str, env: dict[str, str] | None = None, **knobs: object) -> str:
    return Lexer(**knobs).process_word(text, ENV if env is None else env)  # type: ignore[arg-type]


def words(text: str, env: dict[str, str] | None = None, **knobs: object) -> list[str]:
    return Lexer(**knobs).process_words(text, ENV if env is None else env)  # type: ignore[arg-type]


def error(text: str, env: dict[str, str] | None = None, **knobs: object) -> ShellError:
    with pytest.raises(ShellError) as info:
        word(text, env, **knobs)
    return info.value


# --- escape=` mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("he`$PWD", "he$PWD"),
        ("C:\\path\\$PWD", "C:\\path\\/home"),  # backslash is ordinary text
        ('"a`"b"', 'a"b'),
        ('"a``b"', "a`b"),
        ('"a`xb"', "a`xb"),  # before other characters the escape stays
        ('"a\\"', "a\\"),
        ("trailing`", "trailing"),
        ("`'x`'", "'x'"),
        ("${X:-`}}", "}"),
        ("${V#b\\*}", "banana"),  # patterns always use backslash escapes: \* is a literal star
        ("${V#b*}", "anana"),
    ],
)
def test_backtick_escape(text: str, expected: str) -> None:
    assert word(text, escape="`") == expected


def test_backtick_splits_words() -> None:
    assert words("a` b c", escape="`") == ["a b", "c"]


def test_invalid_escape_token_is_rejected() -> None:
    with pytest.raises(ShellError):
        Lexer("$")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("${}", "syntax error: bad substitution"),
        ("${:-x}", "syntax error: bad substitution"),
        ("${{x}", "syntax error: bad substitution"),
        ("${", "syntax error: missing '}'"),
        ("${PWD", "syntax error: missing '}'"),
        ("${PWD:-x", "syntax error: missing '}'"),
        ("${PWD:", "syntax error: missing '}'"),
        ("${V/a", "syntax error: missing '/' in ${}"),
        ("${V/a/b", "syntax error: missing '}'"),
        ("${.}", "unsupported modifier (.) in substitution"),
        ("${PWD=x}", "unsupported modifier (=) in substitution"),
        ("${PWD:=x}", "unsupported modifier (:=) in substitution"),
        ("${PWD:#x}", "unsupported modifier (:#) in substitution"),
        ("'abc", "unexpected end of statement while looking for matching single-quote"),
        ('"abc', "unexpected end of statement while looking for matching double-quote"),
        ('"abc\\"', "unexpected end of statement while looking for matching double-quote"),
        ("${X?}", "X: is not allowed to be unset"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("${X?set X to $PWD}", "X: set X to /home"),
        ("${V#a\\b}", "invalid pattern (a\\b) in substitution: invalid escape '\\b'"),
        ("${V:-${}}", "syntax error: bad substitution"),
    ],
)
def test_error_messages(text: str, detail: str) -> None:
    err = error(text)
    assert err.detail == detail
    assert err.message == f"failed to process {go_quote(text)}: {detail}"
    assert isinstance(err, PybuildError)
    assert err.location is None


def test_error_reports_names_looked_up() -> None:
    err = error("$PWD ${MISSING?need it}")
    assert err.matched == frozenset({"PWD"})
    assert err.unmatched == frozenset({"MISSING"})


def test_error_can_take_a_location() -> None:
    from pybuild.errors import Location

    err = error("${")
    err.with_location(Location("Dockerfile", 3, 0, "WORKDIR ${"))
    assert "Dockerfile:3" in err.render()


# --- deep nesting and large input ---------------------------------------------------------------


def test_nesting_up_to_the_limit_works() -> None:
    text = "${a:-" * MAX_NESTING + "x" + "}" * MAX_NESTING
    assert word(text, {}) == "x"


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 5000, 50_000])
def test_deep_nesting_is_a_clear_error(depth: int) -> None:
    err = error("${a:-" * depth + "x" + "}" * depth, {})
    assert "nested" in err.detail


def test_deep_nesting_through_quotes_is_a_clear_error() -> None:
    err = error('${a:-"' * 3000 + "x" + '"}' * 3000, {})
    assert "nested" in err.detail


def test_deeply_nested_unterminated_is_an_error() -> None:
    error("${a:-" * 10_000, {})


def test_huge_inputs() -> None:
    big = "a" * 1_000_000
    assert word(big) == big
    assert word("$V" * 100_000) == "banana" * 100_000
    assert word('"' + "\\$" * 100_000 + '"') == "$" * 100_000
    assert words("x " * 100_000) == ["x"] * 100_000


def test_patterns_do_not_backtrack_catastrophically() -> None:
    # Python's re would take ages on these; BuildKit's Go regexp is linear and so is our matcher
    value = "a" * 50_000
    assert word("${V##*a*a*a*a*a*a*a*a*a*a*b}", {"V": value}) == value
    assert word("${V%%a*a*a*a*a*a*a*a*a*b}", {"V": value}) == value
    assert word("${V//*a*a*a*a*a*b/x}", {"V": value}) == value
    assert word("${V##*a*a*a*a*a}", {"V": value}) == ""


# --- expansion details --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${V#*n}", "ana"),
        ("${V##*n}", "a"),
        ("${V%n*}", "bana"),
        ("${V%%n*}", "ba"),
        ("${V/an/AN}", "bANana"),
        ("${V//an/AN}", "bANANa"),
        ("${V//?/.}", "......"),
        ("${V//a}", "error"),
        ("${V#[ab]}", "banana"),  # no bracket expressions: [ab] is literal text
        ("${V//*/x}", "x"),
        ("${UNSET//*/x}", "x"),  # Go replaces the empty match at 0 of an empty value
        ("${V/#b/x}", "banana"),  # no anchors either: '#' is literal
        ("${V/a\\/b/x}", "banana"),
        ("$@@", "@"),
        ("$1$2x", "x"),
        ("${10:-ten}", "ten"),
        ("a$", "a$"),
        ("$-x", "x"),
    ],
)
def test_expansion(text: str, expected: str) -> None:
    if expected == "error":
        error(text)
    else:
        assert word(text) == expected


def test_replace_all_expands_go_templates_but_replace_first_does_not() -> None:
    env = {"V": "banana", "R": "<$0>", "D": "$$", "N": "$1${x}$"}
    assert word("${V//a/$R}", env) == "b<a>n<a>n<a>"
    assert word("${V/a/$R}", env) == "b<$0>nana"
    assert word("${V//n/$D}", env) == "ba$a$a"
    assert word("${V//n/$N}", env) == "ba$a$a"  # unknown groups vanish, a lone $ stays


def test_go_skips_an_empty_match_right_after_a_match() -> None:
    # Python's re.sub(".*", "-", ...) gives "--" and "--\n--"; Go (and BuildKit) give these
    assert word("${V//*/-}", {"V": "abc"}) == "-"
    assert word("${V//*/-}", {"V": "a\nb"}) == "-\n-"


def test_star_and_question_mark_do_not_cross_newlines() -> None:
    assert word("${V#*b}", {"V": "a\nb"}) == "a\nb"
    assert word("${V#?}", {"V": "\nb"}) == "\nb"
    assert word("${V%%b*}", {"V": "ab\ncb"}) == "ab\nc"


def test_matches_and_unmatched() -> None:
    lex = Lexer()
    result = lex.process_word_with_matches("$PWD ${EMPTY:-x} ${NOPE} plain", ENV)
    assert result == Expansion("/home x  plain", frozenset({"PWD", "EMPTY"}), frozenset({"NOPE"}))
    plain = lex.process_word_with_matches("plain", ENV)
    assert plain == Expansion("plain", frozenset(), frozenset())


def test_skip_unset_env_leaves_references_as_written() -> None:
    assert word("$X ${X} ${X:-$PWD} ${X#a} ${X/a/b} $PWD", skip_unset_env=True) == (
        "$X ${X} ${X:-/home} ${X#a} ${X/a/b} /home"
    )
    # BuildKit drops the second slash of ${X//a/b}
    assert word("${X//a/b}", skip_unset_env=True) == "${X/a/b}"


def test_raw_quotes_and_raw_escapes() -> None:
    assert word("'a b' \"$PWD\"", raw_quotes=True) == "'a b' \"/home\""
    assert word("a\\ b", raw_escapes=True) == "a\\ b"
    # BuildKit writes the escape twice when it precedes an ordinary character inside double quotes
    assert word('"\\t"', raw_escapes=True) == "\\\\t"
    # operands of ${X:-w} process escapes even in raw mode
    assert word("${X:-a\\ b}", raw_escapes=True) == "a b"


def test_skip_process_quotes() -> None:
    assert word("'$PWD' \"x\"", skip_process_quotes=True) == "'/home' \"x\""


def test_case_insensitive_names() -> None:
    assert word("$pwd ${Pwd}", case_insensitive=True) == "/home /home"
    assert word("$pwd", case_insensitive=False) == ""
    result = Lexer(case_insensitive=True).process_word_with_matches("$pwd", ENV)
    assert result.matched == frozenset({"pwd"})


def test_leading_byte_order_mark_is_dropped_like_go_scanner() -> None:
    assert word("\ufeff$PWD") == "/home"
    assert word("a\ufeffb") == "a\ufeffb"


def test_words_splitting() -> None:
    assert words("a $SP b") == ["a", "a", "b", "b"]
    assert words('a "$SP" b') == ["a", "a  b", "b"]
    assert words("a '' b") == ["a", "b"]
    assert words("cat <<  EOF x") == ["cat", "<<  EOF", "x"]
    assert words("a<b c") == ["a<b", "c"]
    assert words("a\u00a0b\x1cc") == ["a", "b\x1cc"]  # Go's unicode.IsSpace, not Python's isspace
    assert words("") == []
    assert words("  ") == []


def test_words_keep_text_before_an_operator_substitution() -> None:
    # BuildKit loses "abc" here (a shared-buffer bug); we do not
    assert words("abc${X:-d e}f g") == ["abcd", "ef", "g"]


def test_words_with_matches() -> None:
    result = Lexer().process_words_with_matches("$PWD $NOPE x", ENV)
    assert result.words == ("/home", "x")
    assert result.value == "/home  x"
    assert result.unmatched == frozenset({"NOPE"})


def test_env_from_list() -> None:
    assert env_from_list(["a=1", "b", "c=x=y", "a=2"]) == {"a": "2", "b": "", "c": "x=y"}


def test_pattern_to_regex() -> None:
    assert pattern_to_regex("a*b?", greedy=False, anchored=False) == "a.*?b."
    assert pattern_to_regex("\\}\\/x.") == "^\\}/x\\."


def test_go_quote() -> None:
    assert go_quote('a"\\\n\t\x00é\u00a0\U0001f600') == '"a\\"\\\\\\n\\t\\x00é\\u00a0😀"'


def test_lexer_is_reentrant_between_calls() -> None:
    lex = Lexer()
    assert lex.process_word_with_matches("$A", {"A": "1"}).matched == frozenset({"A"})
    assert lex.process_word_with_matches("$B", {}).matched == frozenset()


# --- properties ---------------------------------------------------------------------------------

SPECIAL = "${}:-+?#%/\\'\"<` \t\n*@!0123456789_aAxZ한\ufeff\u00a0"
knob = st.booleans()


@settings(max_examples=600, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(SPECIAL), max_size=40) | st.text(max_size=40),
    env=st.dictionaries(st.sampled_from(["a", "x", "A", "0", "@", "_"]), st.text(alphabet=SPECIAL, max_size=8)),
    escape=st.sampled_from(["\\", "`"]),
    raw_quotes=knob, raw_escapes=knob, skip_unset_env=knob, case_insensitive=knob, skip_process_quotes=knob,
)
def test_only_shell_errors(
    text: str, env: dict[str, str], escape: str, raw_quotes: bool, raw_escapes: bool, skip_unset_env: bool,
    case_insensitive: bool, skip_process_quotes: bool,
) -> None:
    lex = Lexer(
        escape, raw_quotes=raw_quotes, raw_escapes=raw_escapes, skip_unset_env=skip_unset_env,
        case_insensitive=case_insensitive, skip_process_quotes=skip_process_quotes,
    )
    for call in (lex.process_word, lex.process_words, lex.process_word_with_matches):
        try:
            call(text, env)
        except ShellError as e:
            assert e.message.startswith("failed to process ")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(string.ascii_letters + string.digits + " \t/.,-_=:@&|;()[]{}*?!#%"),
               max_size=40))
def test_plain_text_is_unchanged(text: str) -> None:
    lex = Lexer()
    assert lex.process_word(text, {}) == text
    assert lex.process_words(text, {}) == text.split()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab*?\n\\"), max_size=8), st.text(alphabet="ab*?\n", max_size=12))
def test_prefix_trim_matches_a_reference(pattern: str, value: str) -> None:
    """Our bitset matcher against Python's re on small inputs (where backtracking is harmless)."""
    import re

    try:
        regex_shortest = pattern_to_regex(pattern, greedy=False, anchored=True)
        regex_longest = pattern_to_regex(pattern, greedy=True, anchored=True)
    except ShellError:
        return
    for op, regex in (("#", regex_shortest), ("##", regex_longest)):
        m = re.match(regex, value)
        expected = value[m.end():] if m else value
        escaped = pattern.replace("}", "\\}")
        assert word("${V" + op + escaped + "}", {"V": value}) == expected
