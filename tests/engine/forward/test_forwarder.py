"""The forwarder's pure judgements: which failures mean the server is away, which mean the pod is gone."""

import ssl

from trayapp.engine.forward.forwarder import never_reached_text, pod_gone_text, server_away
from trayapp.errors import ApiError, ApiUnreachable, AuthError, NotFound


def unreachable_because(cause: BaseException) -> ApiUnreachable:
    try:
        raise ApiUnreachable("kubetray could not reach the API server.") from cause
    except ApiUnreachable as exc:
        return exc


def test_silence_and_busy_answers_mean_the_server_is_away() -> None:
    assert server_away(unreachable_because(ConnectionRefusedError()))
    assert server_away(unreachable_because(TimeoutError()))
    assert server_away(ApiError("busy", status=503))
    assert server_away(ApiError("slow down", status=429))


def test_answers_that_waiting_cannot_fix_are_not_an_outage() -> None:
    assert not server_away(unreachable_because(ssl.SSLCertVerificationError("hostname mismatch")))
    assert not server_away(ApiError("boom", status=500))
    assert not server_away(AuthError("no", status=401))
    assert not server_away(NotFound("gone", status=404))


def test_the_kubelets_words_for_a_pod_that_is_gone() -> None:
    assert pod_gone_text('error forwarding port 8080 to pod 1f2e, uid : failed to find sandbox "1f2e" in store: '
                         "not found")
    assert pod_gone_text("an error occurred forwarding 8080 -> 8080: pod not found (\"web-1_default\")")
    assert not pod_gone_text("error forwarding port 8080 to pod web-1, uid : ... connect: connection refused")


def test_only_a_refused_dial_means_nothing_reached_the_pod() -> None:
    assert never_reached_text("... dial tcp4 127.0.0.1:8080: connect: connection refused ")
    assert not never_reached_text("... read tcp4 127.0.0.1:51234->127.0.0.1:8080: read: connection reset by peer")
