"""Checking one submission's answers, scope by scope (the top level, each repeat instance):
types, options, relevance, required, constraints, calculations and repeat counts."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.services import expressions
from app.services.answers.parts import CALCULATED_TEXT, CompiledQuestion, CompiledRepeat, PageRows
from app.services.expressions import Env, NodeSet, string
from app.services.expressions.forms import shared_depth

if TYPE_CHECKING:
    from app.services.answers.compiled import CompiledQuestionnaire


@dataclass
class Checking:
    errors: list[dict[str, Any]]
    pages: PageRows
    counters: dict[str, int]
    form: "CompiledQuestionnaire | None" = None
    # the answers in view: the top level, then each enclosing repeat instance (repeat, answers)
    chain: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    steps: list[int] = field(default_factory=lambda: [0])

    def env(self, position: int) -> Env:
        return Env(lookup=self.lookup, position=position, steps=self.steps)

    def lookup(self, key: str) -> Any:
        """An answer as expressions see it: this instance's or an enclosing one's; all the
        instances' values (a node-set) for a question inside another repeat."""
        form = self.form
        assert form is not None  # noqa: S101 - set whenever expressions run
        owners = form.owners.get(key) or (None,)
        owner = owners[0] if len(owners) == 1 else self.nearest(owners)
        for scope, values in reversed(self.chain):
            if scope == owner:
                value = values.get(key)
                break
        else:
            value = NodeSet(self.collect(key, owner))
        if type(value) is list and key in form.repeats:
            return NodeSet(value)
        return value

    def nearest(self, owners: tuple[str | None, ...]) -> str | None:
        """Of the repeats that share a key, the one a reference from here means (as
        expressions.forms.KeyIndex.find chose when the definition was checked)."""
        assert self.form is not None  # noqa: S101
        here = tuple(str(scope) for scope, _ in self.chain[1:])
        paths = self.form.repeat_path
        return max(owners, key=lambda owner: shared_depth(paths.get(owner or "", ()), here))

    def collect(self, key: str, owner: str | None) -> list[Any]:
        """`key`'s values in every instance of its repeat under the nearest common scope."""
        assert self.form is not None  # noqa: S101
        path = self.form.repeat_path.get(owner or "", ())
        scopes = [scope for scope, _ in self.chain]
        start = 0
        current: list[Any] = [self.chain[0][1]]
        for index, repeat in enumerate(path):
            if repeat in scopes:
                start, current = index + 1, [self.chain[scopes.index(repeat)][1]]
        for repeat in path[start:]:
            current = [
                instance
                for values in current
                for instance in (values.get(repeat) or ())
                if isinstance(instance, dict)
            ]
            self.steps[0] += len(current)
        found = [values.get(key) for values in current]
        if key in self.form.repeats:  # a nested repeat's instances, seen from outside
            return [item for value in found if isinstance(value, list) for item in value]
        return found

    def scope(
        self,
        members: Sequence[CompiledQuestion | CompiledRepeat],
        keys: frozenset[str],
        given: dict[str, Any],
        rows: Mapping[int, list[Any]],
        parent: int | None,
        loc: list[str | int],
        position: int,
    ) -> None:
        """Check one scope's answers (the top level, or one instance of a repeat).

        Runs for every answer of every submission: the loop keeps to local names and
        precomputed fields (a 300-question response is checked in about 0.3 ms); expressions
        are evaluated only for questions that have them."""
        extra = given.keys() - keys
        if extra:
            for key in given:
                if key in extra:
                    self.fail(loc, key, "no such question here", "unknown")
        env: Env | None = None
        for member in members:
            if type(member) is CompiledQuestion and member.plain:
                # The same steps as below for a question no expression touches (most of a
                # form's): shown, required or not as defined, its answer checked alone.
                value = given.get(member.key)
                if value is None:
                    if member.required:
                        message = member.required_message or "an answer is required"
                        self.fail(loc, member.key, message, "missing")
                    rows[member.page].extend(member.empty)
                    continue
                problem, encoded = member.check(value)
                if problem is None:
                    rows[member.page].extend(encoded)
                else:
                    self.fail(loc, member.key, problem, "invalid_answer")
                continue
            relevant = member.relevant
            shown = True
            if relevant:
                env = env or self.env(position)
                shown = all(condition.holds(env) for condition in relevant)
            if type(member) is CompiledRepeat:
                self.repeat(member, given, shown, parent, loc)
                continue
            assert type(member) is CompiledQuestion  # noqa: S101 - for the type checker
            value = given.get(member.key)
            if member.calculation is not None:
                env = env or self.env(position)
                self.calculate(member, value, shown, given, rows, env)
                continue
            if value is None:
                required = member.required
                if shown and not required and member.required_when is not None:
                    env = env or self.env(position)
                    env.current = None  # `.` is this (missing) answer
                    required = member.required_when.holds(env)
                if required and shown:
                    message = member.required_message or "an answer is required"
                    self.fail(loc, member.key, message, "missing")
                rows[member.page].extend(member.empty)
                continue
            if not shown:
                self.fail(loc, member.key, "this question is not relevant here", "not_relevant")
                del given[member.key]  # later expressions see it unanswered, as ODK does
                continue
            problem, encoded = member.check(value)
            if problem is None and member.choice_filter is not None:
                env = env or self.env(position)
                problem = self.filtered(member, value, env)
            if problem is None and member.constraint is not None:
                env = env or self.env(position)
                env.current = value
                if not member.constraint.holds(env):
                    broken = member.constraint_message or "the answer breaks the question's rule"
                    self.fail(loc, member.key, broken, "constraint")
                    continue
            if problem is None:
                rows[member.page].extend(encoded)
            else:
                self.fail(loc, member.key, problem, "invalid_answer")

    def filtered(self, member: CompiledQuestion, value: Any, env: Env) -> str | None:
        """Why a chosen value is outside the options the choice_filter keeps (None: inside).
        Evaluated for the chosen values only, so a long list costs nothing per response."""
        chosen = [value] if type(value) is str else value
        outside = []
        try:
            for item in chosen:
                env.option = member.option_properties.get(item)
                assert member.choice_filter is not None  # noqa: S101 - checked by the caller
                if not member.choice_filter.holds(env):
                    outside.append(item)
        finally:
            env.option = None
        if outside:
            return f"not among the options its choice_filter allows: {', '.join(outside[:10])}"
        return None

    def calculate(
        self,
        member: CompiledQuestion,
        value: Any,
        shown: bool,
        given: dict[str, Any],
        rows: Mapping[int, list[Any]],
        env: Env,
    ) -> None:
        """The server's value of a calculation, stored as text. A deterministic one replaces
        whatever the client sent (the client computed it from the same answers; refusing
        differences would lose submissions over number formatting); one using now(), today(),
        uuid(), random() or once() keeps the client's value, and without one stays empty (a
        value made here would differ on a replay, which must store nothing new)."""
        assert member.calculation is not None  # noqa: S101
        result: str | None = None
        if shown:
            if member.calculation.volatile:
                ok = value is not None and not isinstance(value, dict | list)
                result = string(value) if ok else None
            else:
                result = string(member.calculation.evaluate(env))
        result = result[:CALCULATED_TEXT] if result else None
        if result is None:
            given.pop(member.key, None)
        else:
            given[member.key] = result
        rows[member.page].append(result)

    def repeat(
        self,
        repeat: CompiledRepeat,
        given: dict[str, Any],
        shown: bool,
        parent: int | None,
        loc: list[str | int],
    ) -> None:
        value = given.get(repeat.key)
        if shown and repeat.count is not None:
            env = self.env(0)
            wanted = expressions.number(repeat.count.evaluate(env))
            got = len(value) if isinstance(value, list) else 0
            if math.isfinite(wanted) and got != max(0, int(wanted)):
                message = f"expected {max(0, int(wanted))} instances (its count)"
                self.fail(loc, repeat.key, message, "count")
                return
        if value is None:
            if shown and repeat.min_count:
                self.fail(loc, repeat.key, f"at least {repeat.min_count} instances", "missing")
            return
        if not shown:
            self.fail(loc, repeat.key, "this question is not relevant here", "not_relevant")
            del given[repeat.key]
            return
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(loc, repeat.key, "expected a list of objects, one per instance", "type")
            return
        if len(value) > repeat.max_count:
            self.fail(loc, repeat.key, f"at most {repeat.max_count} instances", "too_many")
            return
        if repeat.min_count and len(value) < repeat.min_count:
            self.fail(loc, repeat.key, f"at least {repeat.min_count} instances", "too_few")
            return
        # The instances as expressions see them (calculations included), filled in order.
        seen: list[dict[str, Any]] = []
        given[repeat.key] = seen
        for position, instance in enumerate(value):
            number = self.counters.get(repeat.key, 0)
            self.counters[repeat.key] = number + 1
            rows = {}
            for page in repeat.pages:
                rows[page] = [number, parent, position]
                self.pages[page].append(rows[page])
            answers = {key: answer for key, answer in instance.items() if answer is not None}
            seen.append(answers)
            self.chain.append((repeat.key, answers))
            try:
                self.scope(
                    repeat.members,
                    repeat.keys,
                    answers,
                    rows,
                    number,
                    [*loc, repeat.key, position],
                    position + 1,
                )
            finally:
                self.chain.pop()

    def fail(self, loc: list[str | int], key: str, message: str, kind: str) -> None:
        self.errors.append({"loc": ["body", "answers", *loc, key], "msg": message, "type": kind})
