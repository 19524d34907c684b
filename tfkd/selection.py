"""The ``select`` stage of a run with a ``sweep``: it reads the sweep's students' scores on the
selection split (``sweep.split``, the validation split; with ``train.seeds``, the mean over
the seeds), chooses the best by the task's metric (lower is better for loss and perplexity),
and scores the chosen student alone, for every seed, on the test splits. No other student is
ever scored on a test split, and the choice reads nothing but the selection split's scores.

Its folder holds ``s<SEED>/`` per seed (the chosen student's outputs, as an evaluate stage
writes them) and its results say what was chosen on what::

    {"chosen": "alpha0.25", "train_stage": "alpha0.25",
     "selected_on": {"split": "valid", "metric": "BLEU", "seeds": [1, 2, 3]},
     "candidates": {"train": [31.2, 30.9, 31.0], "alpha0.25": [...], ...},
     "scores": {"1": {"test": {...}}, "2": {...}, ...}}
"""

import json
import logging
import os
import statistics

from tfkd.errors import StageError
from tfkd.plan import evaluate_stage_name, seed_of_stage, seed_stage_name
from tfkd.runner import Stage
from tfkd.scores import lower_is_better

log = logging.getLogger("tfkd")


def choose(candidates, metric):
    """The name in ``candidates`` (``{name: [scores, one per seed]}``) with the best mean;
    ties go to the first."""
    sign = -1 if lower_is_better(metric) else 1
    return max(candidates, key=lambda name: sign * statistics.mean(candidates[name]))


def seed_folder(seed):
    return f"s{seed}"


class SelectStage(Stage):
    """See the module's docstring. ``candidates``: ``{student: [its train stages, one per
    seed]}`` (the spec's ``train`` and the sweep's variants)."""

    def __init__(self, name, candidates):
        self.name = name
        self.candidates = candidates

    def config(self, spec):
        splits = self.test_splits(spec)
        from tfkd.stages import _task

        return {
            "split": spec.sweep.split,
            "test_splits": splits,
            "evaluate": spec.evaluate.model_dump(mode="json"),
            "data": _task(spec).data_key(spec, splits),
        }

    def input_files(self, spec):
        from tfkd.stages import _task

        return _task(spec).data_files(spec, self.test_splits(spec))

    @staticmethod
    def test_splits(spec):
        return [s for s in spec.evaluate.splits if s != spec.sweep.split]

    def _scores(self, context):
        """``(metric, {student: [score per seed]})`` on the selection split."""
        split, runner = context.spec.sweep.split, context.runner
        scores, metric = {}, None
        for student, trains in self.candidates.items():
            values = []
            for train in trains:
                base, seed = seed_of_stage(train)
                evaluate = evaluate_stage_name(base)
                evaluate = evaluate if seed is None else seed_stage_name(evaluate, seed)
                result = (runner.marker(evaluate) or {}).get("results", {}).get(split)
                if not result or "score" not in result:
                    raise StageError(f"select: stage {evaluate} has no {split} score to choose by")
                values.append(result["score"])
                metric = result.get("metric", "score")
            scores[student] = values
        return metric, scores

    def run(self, context, workdir):
        from tfkd.stages import load_student

        spec = context.spec
        metric, scores = self._scores(context)
        chosen = choose(scores, metric)
        log.info(
            "select: %s, by %s on %s (%s)",
            chosen,
            metric,
            spec.sweep.split,
            ", ".join(f"{n} {statistics.mean(v):.2f}" for n, v in scores.items()),
        )
        results = {}
        for train in self.candidates[chosen]:
            stage = context.runner.stages[train]
            own = context.with_spec(stage.view(spec))
            seed = own.spec.train.seed
            folder = os.path.join(workdir, seed_folder(seed))
            os.makedirs(folder, exist_ok=True)
            student = load_student(own, train)
            results[str(seed)] = {}
            for split in self.test_splits(spec):
                log.info("select: %s (seed %d) on %s", chosen, seed, split)
                results[str(seed)][split] = own.task.evaluate(own, student, split, folder)
            with open(os.path.join(folder, "scores.json"), "w") as f:
                json.dump(results[str(seed)], f, indent=2)
        seeds = [int(s) for s in results]
        return {
            "chosen": chosen,
            "train_stage": self.candidates[chosen][0],
            "selected_on": {"split": spec.sweep.split, "metric": metric, "seeds": seeds},
            "candidates": scores,
            "scores": results,
        }


__all__ = ["SelectStage", "choose", "seed_folder"]
