"""Judges by name: what each part of a `--judge` spec resolves to.

A name is looked up, in order, in

1. `JUDGES`, name -> factory `(JudgeOptions) -> Judge`: the built-ins below, and whatever
   `register(name, reward_function)` added (one line, no packaging);
2. the entry points of group `mcpgym.judges` (`[project.entry-points."mcpgym.judges"]` in a
   package's pyproject: `mine = "mypkg.rewards:mine"`);
3. a reference `package.module:function` or `path/to/file.py:function` (common.refs).

What an entry point or a reference names is a reward function `(trajectory) -> float | dict`
(judges.functions: a dict's `"reward"` key is the reward, else the mean of its values) or a
`Judge` subclass (made with no arguments). The judge is named after what was asked for, which
is the key of its reward in `reward_parts`.

Built-ins: `rules` (the rule rubric, judges.rules), `env` (the env's verdict score, unchanged),
`ruler` (ART's group-relative RULER, judges.ruler) and `llm` (an absolute LLM rubric judge,
judges.llm_judge); the last two need a judge model (`--judge-model`). Adding one is a factory
and a line in `JUDGES`.

When `--judge` is not given, a CLI uses the env's own default (`default_judge`): `rules` for
energy, whose tasks list the calls a right solution makes; `env` for bfcl-multi-turn and any env
whose tasks list none (the rules judge could only re-read its verdict); what the MCP config's
`"mcpgym": {"default_judge": ...}` says for an env of one's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.refs import load_ref

from .base import Judge
from .functions import RewardFunction, RewardFunctionJudge, verdict_score
from .rules import RubricConfig, RulesJudge

if TYPE_CHECKING:  # the LLM judges' parts load their HTTP clients: only when one is asked for
    from .cache import VerdictCache
    from .endpoint import JudgeEndpoint

ENTRY_POINT_GROUP = "mcpgym.judges"
FALLBACK_JUDGE = "rules"  # for an env that names no default (one that is not an MCPEnv)
JUDGE_HELP = (
    "a judge (rules, env: the env's verdict score, ruler, llm, a registered name or entry point of "
    "mcpgym.judges), a reward function module:function or file.py:function, or a weighted sum such as "
    "ruler:0.7+rules:0.3 (default: the env's own judge: rules for energy, env for bfcl-multi-turn "
    "and other envs whose tasks list no expected calls; an MCP config may name it in mcpgym.default_judge)"
)


@dataclass
class JudgeOptions:
    """What a judge factory may use: the rule rubric, and the LLM judges' endpoint and options
    (one endpoint and cache shared by every LLM judge of a spec)."""

    rubric: RubricConfig | None = None
    concurrency: int = 8
    judge_model: str | None = None
    judge_base_url: str | None = None
    api_key_env: str = "JUDGE_API_KEY"
    extra_body: dict[str, Any] | None = None
    cache_dir: Path | None = None
    judge_rubric: str | None = None
    retries: int = 2
    backoff_s: float = 0.5
    _endpoint: JudgeEndpoint | None = field(default=None, init=False, repr=False)
    _cache: VerdictCache | None = field(default=None, init=False, repr=False)

    def endpoint(self, name: str) -> JudgeEndpoint:
        """The LLM judges' endpoint; ValueError when no judge model was given."""
        if not self.judge_model:
            raise ValueError(f"judge {name!r} needs a judge model (--judge-model)")
        if self._endpoint is None:
            from .endpoint import JudgeEndpoint

            self._endpoint = JudgeEndpoint(
                model=self.judge_model,
                base_url=self.judge_base_url,
                api_key_env=self.api_key_env,
                extra_body=self.extra_body or {},
            )
        return self._endpoint

    def llm_options(self) -> dict[str, Any]:
        """The keyword options of an LLM judge (judges.endpoint.EndpointJudge)."""
        if self._cache is None and self.cache_dir is not None:
            from .cache import VerdictCache

            self._cache = VerdictCache(self.cache_dir)
        return {
            "rubric": self.judge_rubric,
            "concurrency": self.concurrency,
            "cache": self._cache,
            "retries": self.retries,
            "backoff_s": self.backoff_s,
        }


JudgeFactory = Callable[[JudgeOptions], Judge]


def reward_judge(function: RewardFunction) -> JudgeFactory:
    """A factory of judges that score with `function` (judges.functions)."""
    return lambda options: RewardFunctionJudge(function, concurrency=options.concurrency)


def _rules(options: JudgeOptions) -> Judge:
    return RulesJudge(options.rubric, concurrency=options.concurrency)


def _ruler(options: JudgeOptions) -> Judge:
    from .ruler import RulerJudge  # loads ART and litellm: only when asked for

    return RulerJudge(options.endpoint("ruler"), **options.llm_options())


def _llm(options: JudgeOptions) -> Judge:
    from .llm_judge import LLMJudge

    return LLMJudge(options.endpoint("llm"), **options.llm_options())


JUDGES: dict[str, JudgeFactory] = {
    "rules": _rules,
    "env": reward_judge(verdict_score),
    "ruler": _ruler,
    "llm": _llm,
}


def register(name: str, target: RewardFunction | type[Judge], *, replace: bool = False) -> None:
    """Make `name` a judge: `register("brevity", brevity)` with a reward function (or a `Judge`
    subclass). ValueError when the name is taken (`replace=True` takes it over)."""
    if not name or any(char in name for char in ":+ "):
        raise ValueError(f"judge name {name!r}: a name has no ':', '+' or spaces")
    if name in JUDGES and not replace:
        raise ValueError(f"judge {name!r} is already registered")
    JUDGES[name] = as_factory(target, name=name)


def as_factory(target: Any, *, name: str) -> JudgeFactory:
    """A reward function or a `Judge` subclass as a judge factory; ValueError for anything else."""
    if isinstance(target, type) and issubclass(target, Judge):
        return lambda options: target()
    if isinstance(target, type) or not callable(target):
        raise ValueError(f"judge {name!r} is a {type(target).__name__}: expected a reward function or a Judge class")
    return reward_judge(target)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    """Every name a bare judge name can be: registered first, then entry points."""
    return [*JUDGES, *(name for name in _entry_points() if name not in JUDGES)]


def is_name(name: str) -> bool:
    return name in JUDGES or name in _entry_points()


def resolve(name: str) -> JudgeFactory:
    """The factory `name` stands for (module docstring); ValueError of one line when none."""
    if name in JUDGES:
        return JUDGES[name]
    found = _entry_points().get(name)
    if found is not None:
        try:
            target = found.load()
        except Exception as exc:
            raise ValueError(f"judge {name!r} (entry point {found.value}): {type(exc).__name__}: {exc}") from None
        return as_factory(target, name=name)
    if ":" not in name:
        raise ValueError(
            f"unknown judge {name!r}: expected {', '.join(names())}, "
            "a reward function module:function or file.py:function, or an entry point of mcpgym.judges"
        )
    return as_factory(load_ref(name, what="judge"), name=name)


def build(name: str, options: JudgeOptions) -> Judge:
    """The judge `name` stands for, named `name` (the key of its reward in `reward_parts`)."""
    judge = resolve(name)(options)
    judge.name = name
    return judge


def default_judge_of(env: Any) -> str:
    """The judge spec an env asks for when `--judge` is not given (module docstring)."""
    return str(getattr(env, "default_judge", None) or FALLBACK_JUDGE)
