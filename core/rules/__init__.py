"""Rules: plain English (lark grammar) or JSON -> structured RuleSpec -> compiled predicate."""

from core.rules.engine import CompiledRule, Verdict, compile_rule
from core.rules.errors import RuleSpecError, RuleSyntaxError
from core.rules.limits import RuleTooComplex, check_limits
from core.rules.parser import EXAMPLES, parse_rule
from core.rules.spec import RuleSpec

__all__ = [
    "EXAMPLES",
    "CompiledRule",
    "RuleSpec",
    "RuleSpecError",
    "RuleSyntaxError",
    "RuleTooComplex",
    "Verdict",
    "check_limits",
    "compile_rule",
    "parse_rule",
]
