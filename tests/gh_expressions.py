"""GitHub Actions' expression syntax, enough to run the workflows' job-level ``if:`` conditions, and a runner that
decides which jobs of a workflow run, from the ``needs:`` graph, those conditions and each job's outcome.

What GitHub documents ("Evaluate expressions in workflows and actions", "Using conditions to control job
execution") and this follows: literals (``null``, booleans, numbers, 'strings' with '' for a quote), property
dereference (``needs.test.outputs.handed-over``; a missing property is null), ``!``, ``<`` ``<=`` ``>`` ``>=``,
``==`` ``!=`` (strings compared ignoring case; other mixed types compared as numbers), ``&&`` and ``||`` (which
return an operand, not a boolean), parentheses, and the functions ``contains`` (an array's element or a substring,
ignoring case), ``startsWith``, ``endsWith``, ``fromJSON``, ``toJSON`` and the status checks ``success()``,
``failure()``, ``cancelled()``, ``always()``. A condition without a status check is ``success() && (condition)``.
For a job, ``success()`` is true when every job it needs, directly or not, succeeded; ``failure()`` when one of them
failed. A job whose condition is false is skipped. Anything else raises ``ExpressionError``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'(?:[^']|'')*')|(?P<op>&&|\|\||==|!=|<=|>=|[!<>().,\[\]])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
STATUS = ("success", "failure", "cancelled", "always")


class ExpressionError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def truthy(value: object) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, float) and math.isnan(value))


def _number(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip()) if value.strip() else 0.0
        except ValueError:
            return math.nan
    return math.nan


def equal(a: object, b: object) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if type(a) is type(b) and not isinstance(a, (int, float)):
        return a is b if isinstance(a, (dict, list)) else a == b
    return _number(a) == _number(b)


@dataclass
class _Parser:
    """Reads the tokens into a tree of tuples: ("value", v), ("context", name), ("property", node, name),
    ("index", node, node), ("not", node), ("and" | "or", node, node), ("compare", op, node, node),
    ("call", name, [nodes])."""

    tokens: list[tuple[str, str]]
    position: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ExpressionError(f"expression ended early (expected {expected or 'more'})")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, found {token[1]!r}")
        self.position += 1
        return token

    def parse(self) -> tuple:
        node = self.or_()
        if self.position != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.position][1]!r}")
        return node

    def or_(self) -> tuple:
        node = self.and_()
        while self.peek() == "||":
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> tuple:
        node = self.equality()
        while self.peek() == "&&":
            self.take()
            node = ("and", node, self.equality())
        return node

    def equality(self) -> tuple:
        node = self.comparison()
        while self.peek() in ("==", "!="):
            node = ("compare", self.take()[1], node, self.comparison())
        return node

    def comparison(self) -> tuple:
        node = self.unary()
        while self.peek() in ("<", "<=", ">", ">="):
            node = ("compare", self.take()[1], node, self.unary())
        return node

    def unary(self) -> tuple:
        if self.peek() == "!":
            self.take()
            return ("not", self.unary())
        return self.postfix()

    def postfix(self) -> tuple:
        node = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a property name after '.', found {name!r}")
                node = ("property", node, name)
            else:
                node = ("index", node, self.or_())
                self.take("]")
        return node

    def primary(self) -> tuple:
        kind, text = self.take()
        if text == "(" and kind == "op":
            node = self.or_()
            self.take(")")
            return node
        if kind == "number":
            return ("value", float(text))
        if kind == "string":
            return ("value", text[1:-1].replace("''", "'"))
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r}")
        if text in ("true", "false", "null"):
            return ("value", {"true": True, "false": False, "null": None}[text])
        if self.peek() == "(":
            self.take("(")
            args = []
            while self.peek() != ")":
                args.append(self.or_())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            return ("call", text, args)
        return ("context", text)


def _evaluate(node: tuple, context: dict, status: dict[str, Callable[[], bool]]) -> object:
    """GitHub's semantics; ``&&`` and ``||`` evaluate their right side only when needed, as GitHub's runner does
    (``needs.test.result == 'success' && fromJSON(needs.test.outputs.x)`` never reads a failed job's outputs)."""
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "context":
        if node[1] not in context:
            raise ExpressionError(f"unknown context {node[1]!r}")
        return context[node[1]]
    if kind == "property":
        value = _evaluate(node[1], context, status)
        return value.get(node[2]) if isinstance(value, dict) else None
    if kind == "index":
        value, key = _evaluate(node[1], context, status), _evaluate(node[2], context, status)
        if isinstance(value, dict) and isinstance(key, str):
            return value.get(key)
        if isinstance(value, list) and isinstance(key, (int, float)) and 0 <= key < len(value):
            return value[int(key)]
        return None
    if kind == "not":
        return not truthy(_evaluate(node[1], context, status))
    if kind == "and":
        left = _evaluate(node[1], context, status)
        return _evaluate(node[2], context, status) if truthy(left) else left
    if kind == "or":
        left = _evaluate(node[1], context, status)
        return left if truthy(left) else _evaluate(node[2], context, status)
    if kind == "compare":
        op, a, b = node[1], _evaluate(node[2], context, status), _evaluate(node[3], context, status)
        if op in ("==", "!="):
            return equal(a, b) == (op == "==")
        x, y = _number(a), _number(b)
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    return _call(node[1], [_evaluate(arg, context, status) for arg in node[2]], status)


def _call(name: str, args: list, status: dict[str, Callable[[], bool]]) -> object:
    lowered = name.lower()
    if lowered in STATUS:
        if args:
            raise ExpressionError(f"{name}() takes no arguments")
        return status[lowered]()
    if lowered == "contains" and len(args) == 2:
        search, item = args
        if isinstance(search, list):
            return any(equal(element, item) for element in search)
        text, part = (str(a if a is not None else "").casefold() for a in args)
        return part in text
    if lowered in ("startswith", "endswith") and len(args) == 2:
        text, part = (str(a if a is not None else "").casefold() for a in args)
        return text.startswith(part) if lowered == "startswith" else text.endswith(part)
    if lowered == "fromjson" and len(args) == 1:
        try:
            return json.loads(args[0])
        except (TypeError, json.JSONDecodeError) as err:
            raise ExpressionError(f"fromJSON({args[0]!r}): {err}") from None
    if lowered == "tojson" and len(args) == 1:
        return json.dumps(args[0], indent=2)
    raise ExpressionError(f"unsupported function {name}() with {len(args)} argument(s)")


def evaluate(expression: str, context: dict, status: dict[str, Callable[[], bool]] | None = None) -> object:
    """The value of one expression (without the ``${{ }}``)."""
    def unavailable() -> bool:
        raise ExpressionError("a status check function outside a condition")

    return _evaluate(_Parser(_tokens(expression)).parse(), context, status or dict.fromkeys(STATUS, unavailable))


def condition_holds(condition: str | bool | None, context: dict, status: dict[str, Callable[[], bool]]) -> bool:
    """A job's ``if:`` as GitHub reads it: the ``${{ }}`` around it optional, ``success() &&`` added when it names
    no status check."""
    if condition is None:
        condition = "success()"
    if isinstance(condition, bool):
        condition = "true" if condition else "false"
    text = condition.strip()
    if text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1:
        text = text[3:-2]
    if not any(re.search(rf"\b{name}\s*\(", text, re.IGNORECASE) for name in STATUS):
        text = f"success() && ({text})"
    return truthy(evaluate(text, context, status))


def needs_of(job: dict) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def run_jobs(jobs: dict[str, dict], outcomes: dict[str, str], outputs: dict[str, dict] | None = None,
             cancel_during: str | None = None) -> dict[str, str]:
    """The result of every job (success, failure, cancelled or skipped): a job whose condition holds ends as
    ``outcomes`` says (success when not named); its outputs (``outputs``) reach the jobs that need it. With
    ``cancel_during``, the run is cancelled while that job runs: it ends cancelled, and ``cancelled()`` is true for
    every job decided after it."""
    outputs = outputs or {}
    cancelled = False
    results: dict[str, str] = {}
    ancestors: dict[str, set[str]] = {}
    pending = list(jobs)
    while pending:
        ready = [name for name in pending if all(n in results for n in needs_of(jobs[name]))]
        if not ready:
            raise ExpressionError(f"jobs whose needs never complete: {pending}")
        for name in ready:
            pending.remove(name)
            direct = needs_of(jobs[name])
            missing = [n for n in direct if n not in jobs]
            if missing:
                raise ExpressionError(f"job {name} needs unknown jobs {missing}")
            ancestors[name] = set(direct).union(*(ancestors[n] for n in direct))
            needs = {}
            for n in direct:
                needs[n] = {"result": results[n], "outputs": outputs.get(n, {}) if results[n] == "success" else {}}
            before = [results[n] for n in ancestors[name]]
            status = {
                "success": lambda before=before, stop=cancelled: not stop and all(r == "success" for r in before),
                "failure": lambda before=before: any(r == "failure" for r in before),
                "cancelled": lambda stop=cancelled: stop,
                "always": lambda: True,
            }
            runs = condition_holds(jobs[name].get("if"), {"needs": needs}, status)
            results[name] = outcomes.get(name, "success") if runs else "skipped"
            if runs and name == cancel_during:
                results[name], cancelled = "cancelled", True
    return results
