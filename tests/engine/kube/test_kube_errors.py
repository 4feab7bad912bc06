"""How API answers become kubetray errors (pure: the status, the message, Retry-After)."""

from __future__ import annotations

import email.utils
import time

import pytest

from trayapp.engine.kube.api import error_for_status, retry_after_seconds
from trayapp.errors import ApiBusy, ApiError, ApiUnreachable, AuthError, Gone, NotFound


@pytest.mark.parametrize("status", [429, 503])
def test_busy_statuses_are_an_unreachable_server_with_its_retry_after(status: int) -> None:
    error = error_for_status(status, "later", "pods", retry_after=4, server="https://api.example:6443")
    assert isinstance(error, ApiBusy) and isinstance(error, ApiUnreachable)
    assert (error.status, error.retry_after) == (status, 4)
    assert error.message.startswith("The API server https://api.example:6443 is too busy")
    assert error_for_status(status, "later", "pods").retry_after is None  # type: ignore[attr-defined]


def test_401_ends_with_what_to_do_for_the_context() -> None:
    error = error_for_status(401, "Unauthorized.", "pods", context="prod")
    assert isinstance(error, AuthError)
    assert error.message == (
        "The API server refused kubetray's credentials for pods: Unauthorized. Refresh the credentials in "
        "your kubeconfig, or store a token with `kubetray token set prod`.")
    assert error_for_status(401, "Unauthorized", "pods").message.endswith("`kubetray token set CONTEXT`.")


def test_403_is_rbac_and_gets_no_token_advice() -> None:
    error = error_for_status(403, "forbidden", "pods", context="prod")
    assert isinstance(error, AuthError) and "token set" not in error.message


def test_other_statuses_keep_their_types() -> None:
    assert type(error_for_status(404, "m", "pods")) is NotFound
    assert type(error_for_status(410, "m", "pods")) is Gone
    assert type(error_for_status(500, "m", "pods")) is ApiError


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 0 ") == 0.0
    soon = retry_after_seconds(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert soon is not None and 50 < soon <= 61
    assert retry_after_seconds(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    for bad in (None, "", "-3", "1.5", "soon", "Mon, 99 Foo 2026"):
        assert retry_after_seconds(bad) is None
