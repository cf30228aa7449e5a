"""Answers of free-text solutions (GSM8K, SVAMP, any question/answer file, reasoning-gym):
extraction, normalisation, equivalence, and the intermediate results a dense reward looks for.

Extraction follows lm-evaluation-harness's gsm8k task:
- strict ("strict-match"): the number after `#### `; when what follows `####` is no number (a
  free-form answer such as `\\frac{1}{2}`), the rest of that line;
- flexible ("flexible-extract"): the last number in the text;
- both read the text only up to the first `Question:` (the harness's stop sequence, where a
  few-shot completion starts inventing the next problem).

Numbers are normalised (`$1,000.50` -> `1000.5`, `72.0` -> `72`). Two answers are equal when their
normalised numbers are; only when that is inconclusive (an answer is not a plain number) does
math-verify decide, so `1/2`, `0.5` and `\\frac{1}{2}` match. math-verify's own timeouts use
`signal.alarm`, which fails outside the main thread (Streamlit runs pages in threads), so they are
off and the work is bounded instead: answers longer than MAX_VERIFY_CHARS, or with factorials,
nested or huge powers (what makes sympy run for minutes), are compared as text only.

Any text is read in time linear in its length and without an exception: the regexes cannot
backtrack over a digit run more than once (possessive quantifiers, and EQUATION_RE only starts at
a number's first character), and numbers of any length are exact (Decimal arithmetic in a context
with as many digits as its operands, never the default 28).
"""

from __future__ import annotations

import ast
import decimal
import logging
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

STOP = "Question:"  # lm-evaluation-harness gsm8k's `until`
STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")  # the harness's strict-match regex
HASH_LINE_RE = re.compile(r"####[ \t]*([^\n]*)")
FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # the harness's flexible-extract regex
ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")  # GSM8K calculator annotations: <<48/2=24>>
NUMBER_RE = re.compile(r"-?\$?\d[\d,]*+(?:\.\d++)?+")
_NUM = r"(-?\d[\d,]*+(?:\.\d++)?+)"
# Starting only where no digit, `.` or `,` precedes keeps a failed match from being retried at every
# digit of the same number (which made 20,000 digits take 17 s): each character is read by at most
# three attempts, as the a, b or c of one.
EQUATION_RE = re.compile(rf"(?<![\d.,]){_NUM}\s*+([-+*/x×÷])\s*+{_NUM}\s*+=\s*+{_NUM}")
WORDS_RE = re.compile(r"[A-Za-z][A-Za-z '-]*")
MAX_VERIFY_CHARS = 64
_RISKY_RE = re.compile(r"!|\^\s*\{?\s*\(?\s*\d{4,}|\*\*\s*\d{4,}|\\binom|\\prod|\\sum|\\int")
DECIMALS = 6  # results are compared rounded to this many decimal places (10/3 = 3.333333)


def normalise_number(text: str | None) -> str | None:
    """`$1,000` -> `1000`, `72.0` -> `72`, `-3.50` -> `-3.5`, `5.` -> `5`; None when not a number."""
    if text is None:
        return None
    s = text.strip().replace(",", "").replace("$", "").rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", s):
        return None
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    return format_decimal(value)


def exact(*values: Decimal) -> decimal.Context:
    """A context in which + - * of these values, and their quotient to more than DECIMALS places,
    are exact. The default context keeps 28 digits: a longer number was rounded (two different
    29-digit answers compared equal) or raised InvalidOperation when quantized."""
    digits = sum(len(v.as_tuple().digits) + max(v.as_tuple().exponent, 0) for v in values if v.is_finite())
    return decimal.Context(prec=digits + DECIMALS + 8, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def format_decimal(value: Decimal) -> str:
    """Plain notation, at most DECIMALS places, no trailing zeros, no `-0`."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    with decimal.localcontext(exact(value)):
        value = value.quantize(Decimal(1).scaleb(-DECIMALS)) if value.as_tuple().exponent < -DECIMALS else value
        text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def before_stop(text: str) -> str:
    return text.split(STOP, 1)[0]


def extract_strict(text: str) -> str | None:
    """The number after `#### ` (normalised); else the rest of the first `####` line, as written
    (`#### 1/2`, `#### \\frac{1}{2}`: free-form answers for math-verify)."""
    text = before_stop(text)
    line = HASH_LINE_RE.search(text)
    if line is None:
        return None
    written = text[line.start():line.end()]
    number = STRICT_RE.search(written)
    # a number the line goes on from (`1/2`, `2^{3}`) is the start of a free-form answer
    follows = written[number.end():number.end() + 1] if number else ""
    if number is not None and normalise_number(number.group(1)) is not None and follows in ("", " ", "\t", "."):
        return normalise_number(number.group(1))
    rest = line.group(1).strip().rstrip(".").strip()
    return normalise_number(rest) or rest or None  # `#### $1,080` is a number too


def extract_flexible(text: str) -> str | None:
    """The last number in the text (normalised), None when there is none."""
    for match in reversed(FLEXIBLE_RE.findall(before_stop(text))):
        value = normalise_number(match[0] or match[1])
        if value is not None:
            return value
    return None


def extract_answer(text: str) -> tuple[str | None, str | None]:
    """(strict, flexible)."""
    return extract_strict(text), extract_flexible(text)


def equivalent(answer: str | None, reference: str | None) -> bool:
    """Whether an extracted answer equals the reference: numbers by value, else math-verify."""
    if answer is None or reference is None:
        return False
    a, r = normalise_number(answer), normalise_number(reference)
    if a is not None and r is not None:  # the fast, conclusive case
        return a == r
    if _text(answer) == _text(reference):
        return True
    if WORDS_RE.fullmatch(answer.strip()) and WORDS_RE.fullmatch(reference.strip()):
        return False  # words, not algebra: "cab" is not a*b*c
    if not (_bounded(answer) and _bounded(reference)):
        return False
    gold, pred = _parse(reference), _parse(answer)
    if not gold or not pred:
        return False
    from math_verify import verify

    try:
        return bool(verify(list(gold), list(pred), timeout_seconds=None))
    except Exception:  # sympy raises many types on odd input; an unverifiable answer is not correct
        return False


def _text(s: str) -> str:
    return re.sub(r"\s+", "", s).strip("$").lower()


def _bounded(s: str) -> bool:
    """Small enough for sympy to finish quickly: short, at most one power, no factorials or huge exponents."""
    return len(s) <= MAX_VERIFY_CHARS and s.count("^") + s.count("**") <= 1 and not _RISKY_RE.search(s)


@lru_cache(maxsize=4096)
def _parse(s: str) -> tuple:
    """math-verify's parse of an answer, as written and as LaTeX (it only reads LaTeX in `$...$`)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" is our choice
    from math_verify import parse

    try:
        parsed = parse(f"${s.strip().strip('$')}$", parsing_timeout=None) or parse(s, parsing_timeout=None)
    except Exception:
        return ()
    return tuple(parsed)


# -- intermediate results (the dense reward) and steps -------------------------------------------


def annotation_results(solution: str) -> list[str]:
    """The results of a GSM8K solution's calculator annotations, in order: `<<48/2=24>>` -> `24`."""
    out = []
    for body in ANNOTATION_RE.findall(solution):
        value = normalise_number(body.rsplit("=", 1)[-1]) if "=" in body else None
        if value is not None:
            out.append(value)
    return out


def strip_annotations(solution: str) -> str:
    return ANNOTATION_RE.sub("", solution)


def numbers_in(text: str) -> set[str]:
    """Every number a text mentions, normalised."""
    found = (normalise_number(m) for m in NUMBER_RE.findall(strip_annotations(before_stop(text))))
    return {n for n in found if n is not None}


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def expression_steps(expression: str) -> list[tuple[str, str, str, str]]:
    """The `a op b = c` steps of an arithmetic expression, innermost first:
    `( ( 11.0 + 3.0 ) - 9.0 )` -> [("11", "+", "3", "14"), ("14", "-", "9", "5")].
    [] when it is anything but numbers, + - * / and parentheses (or divides by zero)."""

    steps: list[tuple[str, str, str, str]] = []

    def value(node) -> Decimal:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            number = Decimal(str(node.value))  # str() of an int past 4300 digits raises ValueError
            if not number.is_finite():  # `1e999` is a float inf
                raise ValueError("not a finite number")
            return number
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = value(node.left), value(node.right)
            op = _OPS[type(node.op)]
            with decimal.localcontext(exact(a, b)):
                c = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
            steps.append((format_decimal(a), op, format_decimal(b), format_decimal(c)))
            return c
        raise ValueError("not arithmetic")

    try:
        value(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ArithmeticError, RecursionError):
        return []
    return steps


def equations(text: str) -> list[tuple[str, str, str, str]]:
    """`a op b = c` equations written anywhere in a solution (annotations removed), normalised."""
    out = []
    for a, op, b, c in EQUATION_RE.findall(strip_annotations(before_stop(text)).replace("$", "")):
        op = {"x": "*", "×": "*", "÷": "/"}.get(op, op)
        a, b, c = normalise_number(a), normalise_number(b), normalise_number(c)
        if a is not None and b is not None and c is not None:
            out.append((a, op, b, c))
    return out


def equation_is_valid(step: tuple[str, str, str, str]) -> bool:
    a, op, b, c = (Decimal(step[0]), step[1], Decimal(step[2]), Decimal(step[3]))
    with decimal.localcontext(exact(a, b, c)):
        if op == "/":
            if b == 0:
                return False
            return abs(a / b - c) < Decimal("0.01")
        return {"+": a + b, "-": a - b, "*": a * b}[op] == c


def step_signature(text: str) -> tuple:
    """A free-text solution's sequence of intermediate results (the numbers after `=`), then its
    strict answer: two solutions computing the same results in the same order share it."""
    body = strip_annotations(before_stop(text)).split("####", 1)[0]
    results = [normalise_number(m) for m in re.findall(r"=\s*+\$?(-?\d[\d,]*+(?:\.\d++)?+)", body)]
    return tuple(r for r in results if r is not None) + (extract_strict(text),)


def solution_steps(text: str) -> list[str]:
    """A free-text solution's steps as written (the levels of its solution tree): one per non-empty
    line before the final-answer line (calculator annotations removed, whitespace stripped), then
    that line as `#### <answer>`."""
    out = []
    for line in before_stop(text).split("\n"):
        before, hashes, _ = line.partition("####")
        if strip_annotations(before).strip():
            out.append(strip_annotations(before).strip())
        if hashes:
            out.append(f"#### {extract_strict(line) or ''}".rstrip())
            break
    return out


def step_key(step: str) -> tuple:
    """What identifies one step of `solution_steps` (a solution tree's node): the results it
    computes (the numbers after `=`, as in step_signature), so two wordings of one calculation are
    one step; the final-answer step, its answer; a step without a calculation, its words (case and
    spacing folded)."""
    if step.startswith("####"):
        return ("####", extract_strict(step))
    results = step_signature(step)[:-1]  # a line without `####`: its signature is its results alone
    return ("=", *results) if results else ("text", " ".join(step.lower().split()))
