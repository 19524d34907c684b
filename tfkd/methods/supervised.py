"""``distill.method: supervised`` (the default, and what the ``baseline`` stage trains): the
task's maximum-likelihood loss on the references (label-smoothed cross-entropy), no teacher."""

from tfkd import registry
from tfkd.methods.base import Method, MethodSpec


class SupervisedSpec(MethodSpec):
    method: str = "supervised"


class SupervisedMethod(Method):
    name = "supervised"
    spec_schema = SupervisedSpec
    loss_terms = ("xe",)

    def make_trainer(self, context, student):
        from tfkd.training.trainer import SupervisedTrainer

        spec = context.spec
        return SupervisedTrainer(
            student,
            context.task,
            label_smoothing=spec.train.label_smoothing,
            loss_weights=self.loss_weights(spec.distill),
        )


registry.register("method", "supervised")(SupervisedMethod())
registry.set_default("method", "supervised")  # what a spec without distill trains
