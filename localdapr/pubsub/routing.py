"""Routing rules of declarative and programmatic subscriptions: a safe subset of CEL.

Supported: `event.<field>` paths (also `event.data.x.y`), `==`, `!=`, `<`, `<=`, `>`, `>=`,
`&&`, `||`, `!`, parentheses, string / number / true / false / null literals, and the
`.startsWith("...")`, `.endsWith("...")`, `.contains("...")` string methods. Anything else is refused
when the subscription loads, so a rule never silently misroutes.
"""

from __future__ import annotations

import ast
import re
from typing import Any

_TOKENS = [(re.compile(r"&&"), " and "), (re.compile(r"\|\|"), " or "), (re.compile(r"!(?!=)"), " not ")]
_LITERALS = {"true": True, "false": False, "null": None}
_METHODS = {"startsWith": "startswith", "endsWith": "endswith", "contains": "__contains__"}


class RuleError(ValueError):
    pass


def _translate(expr: str) -> str:
    # Replace operators outside string literals only.
    parts = re.split(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", expr)
    for i in range(0, len(parts), 2):
        for pattern, repl in _TOKENS:
            parts[i] = pattern.sub(repl, parts[i])
    return "".join(parts).strip()


class Rule:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        try:
            self._tree = ast.parse(_translate(expr), mode="eval")
        except SyntaxError as exc:
            raise RuleError(f"cannot parse routing rule {expr!r}: {exc.msg}") from exc
        self._check(self._tree.body)

    def _check(self, node: ast.AST) -> None:
        allowed = (
            ast.BoolOp,
            ast.And,
            ast.Or,
            ast.UnaryOp,
            ast.Not,
            ast.Compare,
            ast.Eq,
            ast.NotEq,
            ast.Lt,
            ast.LtE,
            ast.Gt,
            ast.GtE,
            ast.Attribute,
            ast.Name,
            ast.Constant,
            ast.Load,
            ast.Call,
            ast.Subscript,
            ast.USub,
        )
        for sub in ast.walk(node):
            if not isinstance(sub, allowed):
                raise RuleError(f"routing rule {self.expr!r}: {type(sub).__name__} is not supported")
            if isinstance(sub, ast.Name) and sub.id not in ("event", *_LITERALS):
                raise RuleError(f"routing rule {self.expr!r}: unknown name {sub.id!r} (use event.<field>)")
            if isinstance(sub, ast.Call) and not (
                isinstance(sub.func, ast.Attribute) and sub.func.attr in _METHODS and len(sub.args) == 1
            ):
                raise RuleError(f"routing rule {self.expr!r}: only startsWith/endsWith/contains calls")

    def matches(self, event: dict[str, Any]) -> bool:
        try:
            return bool(self._eval(self._tree.body, event))
        except (TypeError, KeyError, AttributeError):
            return False

    def _eval(self, node: ast.AST, event: dict[str, Any]) -> Any:
        match node:
            case ast.Constant(value=v):
                return v
            case ast.Name(id="event"):
                return event
            case ast.Name(id=name):
                return _LITERALS[name]
            case ast.UnaryOp(op=ast.Not(), operand=x):
                return not self._eval(x, event)
            case ast.UnaryOp(op=ast.USub(), operand=x):
                return -self._eval(x, event)
            case ast.BoolOp(op=ast.And(), values=vs):
                return all(self._eval(v, event) for v in vs)
            case ast.BoolOp(op=ast.Or(), values=vs):
                return any(self._eval(v, event) for v in vs)
            case ast.Attribute(value=base, attr=attr):
                obj = self._eval(base, event)
                return obj.get(attr) if isinstance(obj, dict) else None
            case ast.Subscript(value=base, slice=key):
                obj = self._eval(base, event)
                return obj[self._eval(key, event)] if obj is not None else None
            case ast.Call(func=ast.Attribute(value=base, attr=method), args=[arg]):
                obj = self._eval(base, event)
                return (
                    getattr(str(obj), _METHODS[method])(self._eval(arg, event)) if obj is not None else False
                )
            case ast.Compare(left=left, ops=ops, comparators=rights):
                value = self._eval(left, event)
                for op, right_node in zip(ops, rights, strict=True):
                    right = self._eval(right_node, event)
                    if not _compare(op, value, right):
                        return False
                    value = right
                return True
        raise RuleError(f"routing rule {self.expr!r}: cannot evaluate {type(node).__name__}")


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(a == b)
    if isinstance(op, ast.NotEq):
        return bool(a != b)
    if a is None or b is None:
        return False
    if isinstance(op, ast.Lt):
        return bool(a < b)
    if isinstance(op, ast.LtE):
        return bool(a <= b)
    if isinstance(op, ast.Gt):
        return bool(a > b)
    return bool(a >= b)
