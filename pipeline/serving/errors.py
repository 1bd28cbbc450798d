"""What a recommending call can get wrong: the errors every front end shows as one line (the terminal, the page)
or as an HTTP status (the service), and the checks of a call's arguments that need no data.

An architecture and mode become a model file name in `model_name` only; the Recommender's methods that take
`name` (top_for_user, top_for_liked) are what a caller that resolved it already (the service) calls.
"""

from __future__ import annotations

from pipeline import config, manifests


class RecommendError(ValueError):
    """A user mistake or a missing artifact; the message is the one line shown to the user."""


class NotFound(RecommendError):
    """A user or movie ID that the data does not have (the service answers 404)."""


class Unusable(RecommendError):
    """A missing, damaged or unreadable artifact (manifests.ArtifactError): the one line names the file, what is
    wrong and the command that rebuilds it (the service answers 503)."""

    def __init__(self, error: manifests.ArtifactError):
        super().__init__(str(error))
        self.artifact = error


def model_name(architecture: str, mode: str = config.DEFAULT_MODE) -> str:
    """The model file of `architecture` trained in `mode`, e.g. autoint_mlp → autoint_mlp_two_stage."""
    if architecture not in config.ARCHITECTURES:
        raise RecommendError(f"unknown model {architecture!r}; choose one of {', '.join(config.ARCHITECTURES)}")
    if mode not in config.SERVED_MODES:
        raise RecommendError(f"unknown mode {mode!r}; choose one of {', '.join(config.SERVED_MODES)}")
    return config.model_name(architecture, mode)


def parse_user(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise RecommendError(f"user must be a MovieLens user ID (a whole number), not {text!r}") from None


def check_n(n: int) -> None:
    if n < 1:
        raise RecommendError(f"N must be at least 1, not {n}")
