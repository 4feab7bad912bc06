"""One error tree for kubetray. Each error carries a short title and a message written for people.

Third-party exceptions are translated into these at the boundaries (engine/kube/api.py, engine/forward/v4dial.py and pump.py); code
branches on the types, never on message text.
"""

from __future__ import annotations


class KubetrayError(Exception):
    """Base of every error kubetray reports to the user."""

    title = "kubetray error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class KubeconfigError(KubetrayError):
    title = "Kubeconfig problem"


class ApiError(KubetrayError):
    """The API server answered with an error status, or could not be reached."""

    title = "Kubernetes API error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiUnreachable(ApiError):
    title = "Cluster unreachable"


class ApiBusy(ApiUnreachable):
    """429 or 503: the API server (or what fronts it) is briefly away and says when to come back.

    Callers treat it like an unreachable server (keep the listener, retry), waiting at least
    `retry_after` seconds when the server named a time (capped by the caller).
    """

    title = "Cluster busy"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ResponseTooLarge(ApiError):
    """A list, error body or watch line beyond what any real object needs: refused, not buffered."""

    title = "Response too large"


class AuthError(ApiError):
    """401 or 403: the credentials were refused."""

    title = "Credentials refused"


class NotFound(ApiError):
    title = "Not found"


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; list again."""

    title = "Watch expired"


class PortError(KubetrayError):
    title = "Local port unavailable"


class WireError(KubetrayError):
    """The port-forward stream broke the v4.channel.k8s.io protocol."""

    title = "Port-forward protocol error"
