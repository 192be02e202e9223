"""Full fine-tuning: every parameter trains."""

from tailorkit.methods.base import Method, register


@register
class Full(Method):
    name = "full"
    summary = "train every parameter"
    keeps_frozen_prefix = True

    def apply(self, handle) -> None:
        handle.set_trainable(lambda name: True)
