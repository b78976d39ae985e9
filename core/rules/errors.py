"""A rule sentence that cannot be understood: where, what was expected, and what was probably meant."""

from __future__ import annotations


class RuleSyntaxError(ValueError):
    def __init__(self, sentence: str, column: int, expected: list[str], suggestion: str | None):
        self.sentence = sentence
        self.column = column  # 1-based
        self.expected = expected
        self.suggestion = suggestion
        pointer = " " * (column - 1) + "^"
        lines = [f"cannot understand the rule at column {column}:", f"  {sentence}", f"  {pointer}"]
        if expected:
            lines.append(f"expected one of: {', '.join(expected)}")
        if suggestion:
            lines.append(f'closest supported phrasing: "{suggestion}"')
        super().__init__("\n".join(lines))

    def as_dict(self) -> dict[str, object]:
        return {
            "sentence": self.sentence,
            "column": self.column,
            "expected": self.expected,
            "suggestion": self.suggestion,
            "message": str(self),
        }


class RuleSpecError(ValueError):
    """A structured (JSON) rule that refers to unknown facts or mixes incompatible values."""
