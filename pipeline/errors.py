"""The project's exception types. The CLI maps them to exit codes in one place."""


class DeepfakeError(Exception):
    """Base class of every error this project raises on purpose."""


class UsageError(DeepfakeError):
    """The user asked for something impossible (bad option, missing directory). Exit code 2."""


class MediaError(DeepfakeError):
    """One input could not be read or decoded. Batch work reports it and goes on."""


class MediaTooLarge(MediaError):
    """An image or video frame that would decode to more pixels than allowed, refused from its header.
    `refusal` says what and why; the message adds what the reader can do (`advice`, the CLI's by default)."""

    def __init__(self, refusal: str, advice: str = "raise the limit with --max-megapixels for a file you trust"):
        self.refusal = refusal
        super().__init__(self.with_advice(advice))

    def with_advice(self, advice: str) -> str:
        return f"{self.refusal}; it was not decoded ({advice})"


class DataError(DeepfakeError):
    """A manifest, split, checkpoint or other data file is missing, empty or corrupt."""
