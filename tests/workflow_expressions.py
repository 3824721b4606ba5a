"""GitHub Actions expressions (``${{ … }}`` and ``if:``), evaluated as GitHub documents them, for the harness in
tests/workflow_harness.py.

What GitHub's "Evaluate expressions in workflows and actions" page defines: literals (``null``, booleans, numbers,
``'strings'`` with ``''`` for a quote), context properties (``a.b``, ``a['b']``, names with ``-``, the ``.*`` object
filter), ``!``, ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=`` (loose: operands of different types are compared as
numbers; strings ignore case), ``&&`` and ``||`` (which return an operand, not a boolean), and the functions
``contains``, ``startsWith``, ``endsWith``, ``format``, ``join``, ``toJSON``, ``fromJSON`` and the status checks
``success``, ``always``, ``cancelled``, ``failure``. ``hashFiles`` is not evaluated here (no workflow uses it): an
expression that calls it, or any unknown function, raises ``ExpressionError`` naming it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?))(?![\w-])"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
STATUS_FUNCTIONS = ("success", "always", "cancelled", "failure")


class ExpressionError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ExpressionError(f"unexpected {text[position:].strip()[:20]!r} in expression {text!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def to_string(value: Any) -> str:
    """How GitHub writes a value into text (``run:``, ``env:``, ``with:``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "") or isinstance(value, (dict, list))


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, (dict, list)) or isinstance(right, (dict, list)):
        return left is right
    if type(left) is type(right) or (isinstance(left, (int, float)) and isinstance(right, (int, float))
                                     and not isinstance(left, bool) and not isinstance(right, bool)):
        if isinstance(left, str):
            return left.casefold() == right.casefold()
        return left == right
    return _number(left) == _number(right)


def _compare(left: Any, right: Any, op: str) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        a, b = left.casefold(), right.casefold()
    else:
        a, b = _number(left), _number(right)
        if math.isnan(a) or math.isnan(b):
            return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


class _Parser:
    def __init__(self, text: str, context: dict, status: dict[str, bool]) -> None:
        self.text, self.tokens, self.position = text, _tokens(text), 0
        self.context, self.status = context, status

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in expression {self.text!r}")
        self.position += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in expression {self.text!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.equality()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.equality()
            value = right if truthy(value) else value
        return value

    def equality(self) -> Any:
        value = self.comparison()
        while self.peek() in (("op", "=="), ("op", "!=")):
            op = self.take()[1]
            right = self.comparison()
            value = _equal(value, right) if op == "==" else not _equal(value, right)
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in (("op", "<"), ("op", "<="), ("op", ">"), ("op", ">=")):
            op = self.take()[1]
            value = _compare(value, self.unary(), op)
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                kind, name = self.take()
                if name == "*":
                    value = _elements(value)
                    continue
                if kind != "name":
                    raise ExpressionError(f"expected a property name after '.' in expression {self.text!r}")
                value = _property(value, name)
            else:
                key = self.or_()
                self.take("]")
                value = _property(value, key)
        return value

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            number = float(int(value, 16)) if value.lower().startswith(("0x", "-0x")) else float(value)
            return int(number) if number.is_integer() else number
        if kind == "op" and value == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r} in expression {self.text!r}")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self.peek() == ("op", "("):
            return self.call(value)
        if value not in self.context:
            raise ExpressionError(f"unknown context {value!r} in expression {self.text!r}")
        return self.context[value]

    def call(self, name: str) -> Any:
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        lowered = name.lower()
        if lowered in STATUS_FUNCTIONS:
            return {"always": True}.get(lowered, self.status.get(lowered, False))
        functions = {
            "contains": _contains, "format": _format, "join": _join, "fromjson": _from_json,
            "startswith": lambda a, b: to_string(a).casefold().startswith(to_string(b).casefold()),
            "endswith": lambda a, b: to_string(a).casefold().endswith(to_string(b).casefold()),
            "tojson": lambda v: json.dumps(v, indent=2),
        }
        if lowered not in functions:
            raise ExpressionError(f"function {name}() is not evaluated by this harness (expression {self.text!r})")
        return functions[lowered](*args)


def _property(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        lowered = {str(k).casefold(): v for k, v in value.items()}
        return lowered.get(to_string(key).casefold())
    if isinstance(value, list) and isinstance(key, (int, float)) and not isinstance(key, bool):
        index = int(key)
        return value[index] if 0 <= index < len(value) else None
    return None


def _elements(value: Any) -> list:
    """``.*``: an object's values, an array's elements."""
    return list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []


def _contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(_equal(element, item) for element in search)
    return to_string(item).casefold() in to_string(search).casefold()


def _format(template: Any, *args: Any) -> str:
    text = to_string(template)
    return re.sub(r"\{(\d+)\}", lambda m: to_string(args[int(m.group(1))]), text.replace("{{", "\0").replace(
        "}}", "\1")).replace("\0", "{").replace("\1", "}")


def _join(values: Any, separator: Any = ",") -> str:
    if isinstance(values, list):
        return to_string(separator).join(to_string(v) for v in values)
    return to_string(values)


def _from_json(text: Any) -> Any:
    try:
        return json.loads(to_string(text))
    except ValueError as err:
        raise ExpressionError(f"fromJSON({to_string(text)!r}): not JSON ({err})") from None


def evaluate(text: str, context: dict, status: dict[str, bool] | None = None) -> Any:
    """The value of one expression (without ``${{ }}``)."""
    return _Parser(text, context, status or {"success": True, "failure": False, "cancelled": False}).parse()


EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def substitute(value: Any, context: dict, status: dict[str, bool] | None = None) -> Any:
    """A YAML value with its ``${{ }}`` evaluated: a value that is exactly one expression keeps its type (GitHub
    passes ``fromJSON(…)`` on as a list), text with expressions inside becomes text; dicts and lists recursively."""
    if isinstance(value, dict):
        return {k: substitute(v, context, status) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, context, status) for v in value]
    if not isinstance(value, str) or "${{" not in value:
        return value
    whole = EMBEDDED.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), context, status)
    return EMBEDDED.sub(lambda m: to_string(evaluate(m.group(1), context, status)), value)


def condition(text: Any, context: dict, status: dict[str, bool]) -> bool:
    """An ``if:``: with or without ``${{ }}``; without a status function GitHub adds ``success() &&``."""
    if text is None:
        return status.get("success", False)
    if isinstance(text, bool):
        return text and status.get("success", False)
    inner = to_string(text).strip()
    whole = EMBEDDED.fullmatch(inner)
    if whole:
        inner = whole.group(1).strip()
    if not re.search(r"\b(success|always|cancelled|failure)\s*\(", inner, re.IGNORECASE):
        inner = f"success() && ({inner})"
    return truthy(evaluate(inner, context, status))
