"""The project's exception types. The CLI maps them to exit codes in one place."""


class DeepfakeError(Exception):
    """Base class of every error this project raises on purpose."""


class UsageError(DeepfakeError):
    """The user asked for something impossible (bad option, missing directory). Exit code 2."""


class MediaError(DeepfakeError):
    """One input could not be read or decoded. Batch work reports it and goes on."""


class MediaTooLarge(MediaError):
    """An image or video frame that would decode to more pixels than allowed, refused from its header."""


class DataError(DeepfakeError):
    """A manifest, split, checkpoint or other data file is missing, empty or corrupt."""
