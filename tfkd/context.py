"""What a run's hooks receive first: :class:`RunContext`. Importing this does not import TensorFlow."""

from tfkd import registry


class RunContext:
    """The spec a hook works with (a stage's own view of it: a variant's, say), its task and
    method, the runner (stage directories; ``None`` while a spec is validated or planned) and
    artefacts loaded once per process (corpora, tokenizers)."""

    def __init__(self, spec, runner=None):
        self.spec = spec
        self.runner = runner
        self.task = registry.lookup("task", spec.task)
        self.method = registry.lookup("method", spec.method)
        self._memo = {}

    def with_spec(self, spec):
        """This context as a stage with its own view of the spec sees it (a variant's, say):
        the same runner and loaded artefacts."""
        view = RunContext.__new__(RunContext)
        view.__dict__.update(self.__dict__)
        view.spec = spec
        view.method = registry.lookup("method", spec.method)
        return view

    def memo(self, key, make):
        """``make()`` once per ``key`` for this run."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def tokenizers(self):
        """The task's tokenizers, from the vocab stage's files."""
        return self.memo("tokenizers", lambda: self.task.load_tokenizers(self.runner.stage_dir("vocab")))

    def method_specs(self):
        """The specs of the run's train stages trained by this context's method: the run's own
        (when it is that method's) and its variants' (once the spec has resolved them). A
        method plans the stages all of them need."""
        resolved = self.spec._variants or {}
        own = [self.spec] if self.spec.method == self.method.name else []
        return own + [
            resolved[name]
            for name in self.spec.variants or {}
            if name in resolved and resolved[name].method == self.method.name
        ]

    def method_students(self, plan):
        """``[(train stage, variant or None, its spec)]``: the first-seed train stages of
        ``plan`` (a :class:`tfkd.plan.RunPlan`) trained by this context's method, each with
        the spec it trains with (a variant's once the spec has resolved it); what a method
        extending or checking the plan per student walks."""
        resolved = self.spec._variants or {}
        found = []
        for name in plan.with_role("train"):
            stage = plan[name]
            if stage.method != self.method.name or stage.seed is not None:
                continue
            own = self.spec if stage.variant is None else resolved.get(stage.variant)
            if own is not None:
                found.append((name, stage.variant, own))
        return found


__all__ = ["RunContext"]
