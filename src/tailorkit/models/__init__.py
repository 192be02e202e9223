"""Models behind one interface: ModelHandle."""

from tailorkit.models.handle import ModelHandle, handle_for, load_text_classifier

__all__ = ["ModelHandle", "handle_for", "load_text_classifier"]
