"""The service's named errors: each carries the HTTP status it maps to; messages name field and rule."""

from jobcare.errors import JobcareError


class ServingError(JobcareError):
    """A request the service refuses; ``status`` is the HTTP status, the message names field and rule."""

    status = 400


class UnknownSeekerError(ServingError):
    status = 404


class NotReadyError(ServingError):
    status = 503
