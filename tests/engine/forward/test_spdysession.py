"""The client SPDY session as transcripts: what it writes for each step, what it makes of the
kubelet's frames. No sockets, no sleeps: time is a number handed in."""

from __future__ import annotations

import pytest

from trayapp.engine.forward.spdy import (
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
)
from trayapp.engine.forward.spdysession import SessionLost, SessionState, SpdyClientSession
from trayapp.engine.forward.transport import PodRefused


class Kubelet:
    """The server's end of the transcript: decodes what the session wrote, encodes its answers."""

    def __init__(self, session: SpdyClientSession) -> None:
        self.session = session
        self._decoder = FrameDecoder()
        self._encoder = FrameEncoder()

    def received(self) -> list[Frame]:
        return self._decoder.receive_data(self.session.data_to_send())

    def send(self, *frames: Frame, now: float = 0.0) -> None:
        self.session.receive_data(b"".join(self._encoder.encode(f) for f in frames), now)


def error_headers(port: int, request: str) -> tuple[tuple[str, str], ...]:
    return (("streamtype", "error"), ("port", str(port)), ("requestid", request))


def data_headers(port: int, request: str) -> tuple[tuple[str, str], ...]:
    return (("streamtype", "data"), ("port", str(port)), ("requestid", request))


@pytest.fixture
def kubelet() -> Kubelet:
    return Kubelet(SpdyClientSession(0.0, buffer_limit=1000, ping_interval=30, ping_timeout=15))


def test_a_connection_opens_with_both_streams_and_its_first_bytes_in_one_write(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(8080)
    kubelet.session.send(handle, b"GET / HTTP/1.1\r\n\r\n")
    # kubectl's frames, in kubectl's order, without waiting for a SYN_REPLY in between.
    assert kubelet.received() == [
        SynStream(1, error_headers(8080, "0")),
        Data(1, b"", fin=True),
        SynStream(3, data_headers(8080, "0")),
        Data(3, b"GET / HTTP/1.1\r\n\r\n"),
    ]
    assert handle == 3


def test_each_connection_gets_its_own_pair_and_request_id(kubelet: Kubelet) -> None:
    first, second = kubelet.session.open(80), kubelet.session.open(9090)
    frames = kubelet.received()
    syns = [f for f in frames if isinstance(f, SynStream)]
    assert [(s.stream_id, s.headers) for s in syns] == [
        (1, error_headers(80, "0")), (3, data_headers(80, "0")),
        (5, error_headers(9090, "1")), (7, data_headers(9090, "1")),
    ]
    assert (first, second) == (3, 7)
    # The kubelet's empty replies change nothing; its bytes go to the right connection.
    kubelet.send(SynReply(1), SynReply(3), SynReply(5), SynReply(7), Data(7, b"two"), Data(3, b"one"))
    assert kubelet.session.take_changed() == {3, 7}
    assert kubelet.session.read(first) == b"one"
    assert kubelet.session.read(second) == b"two"
    assert kubelet.session.read(first) is None


def test_big_sends_are_cut_into_frames(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(80)
    kubelet.received()
    kubelet.session.send(handle, bytes(200_000))
    frames = kubelet.received()
    assert all(isinstance(f, Data) and f.stream_id == 3 and len(f.data) <= 65536 for f in frames)
    assert sum(len(f.data) for f in frames if isinstance(f, Data)) == 200_000


def test_half_close_both_ways(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(80)
    kubelet.received()
    kubelet.session.send_eof(handle)
    assert kubelet.received() == [Data(3, b"", fin=True)]
    kubelet.session.send_eof(handle)  # once is enough
    assert kubelet.received() == []
    # The pod answers after our FIN, then ends its side; then the kubelet closes the error stream.
    kubelet.send(Data(3, b"answer"), Data(3, b"", fin=True), Data(1, b"", fin=True))
    assert kubelet.session.read(handle) == b"answer"
    assert kubelet.session.read(handle) == b""
    kubelet.session.close(handle)
    assert kubelet.received() == []  # both sides ended cleanly: nothing to reset


def test_the_pod_may_end_first_while_we_still_send(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(80)
    kubelet.received()
    kubelet.send(Data(3, b"", fin=True))
    assert kubelet.session.read(handle) == b""
    kubelet.session.send(handle, b"more")
    assert kubelet.received() == [Data(3, b"more")]


def test_closing_an_unfinished_connection_resets_both_streams(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(80)
    kubelet.received()
    kubelet.session.close(handle)
    assert kubelet.received() == [RstStream(1, RstStatus.CANCEL), RstStream(3, RstStatus.CANCEL)]
    kubelet.send(Data(3, b"late"))  # frames the kubelet sent before it saw the reset are dropped
    assert kubelet.session.read(handle) == b""
    assert kubelet.session.connections == 0


def test_error_stream_text_fails_only_that_connection_after_its_bytes(kubelet: Kubelet) -> None:
    bad, good = kubelet.session.open(7001), kubelet.session.open(7000)
    kubelet.received()
    text = ("error forwarding port 7001 to pod echo, uid : failed to execute portforward in network namespace "
            "\"/var/run/netns/cni-1\": failed to connect to localhost:7001 inside namespace: connection refused")
    kubelet.send(Data(3, b"partial"), Data(1, text.encode()), Data(1, b"", fin=True), Data(3, b"", fin=True),
                 Data(7, b"fine"))
    assert kubelet.session.read(bad) == b"partial"
    with pytest.raises(PodRefused) as refused:
        kubelet.session.read(bad)
    assert refused.value.message == text
    assert not isinstance(refused.value, SessionLost)
    assert kubelet.session.read(good) == b"fine"
    assert kubelet.session.state is SessionState.OPEN
    assert not kubelet.session.poisoned  # we had sent `bad` nothing


def test_a_failed_connection_we_sent_bytes_to_poisons_the_session(kubelet: Kubelet) -> None:
    # spdystream's worker may now be blocked on those bytes for good: no new streams here.
    handle = kubelet.session.open(7001)
    kubelet.session.send(handle, b"GET /")
    kubelet.received()
    kubelet.send(Data(1, b"error forwarding port 7001 to pod echo, uid : connection refused"))
    assert kubelet.session.poisoned
    assert kubelet.session.state is SessionState.OPEN  # the other connections go on


def test_rst_stream_fails_only_that_connection(kubelet: Kubelet) -> None:
    bad, good = kubelet.session.open(80), kubelet.session.open(80)
    kubelet.received()
    kubelet.send(RstStream(3, RstStatus.CANCEL))
    with pytest.raises(PodRefused, match="reset the data stream .* port 80 .*CANCEL"):
        kubelet.session.read(bad)
    with pytest.raises(PodRefused):
        kubelet.session.send(bad, b"x")
    kubelet.session.close(bad)
    assert kubelet.received() == []  # the kubelet already reset it: no reset back
    kubelet.session.send(good, b"ok")
    assert kubelet.received() == [Data(7, b"ok")]


def test_rst_after_error_text_carries_the_kubelets_words(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(80)
    kubelet.received()
    kubelet.send(Data(1, b"timed out waiting for streams of request 0"), RstStream(1, RstStatus.CANCEL))
    with pytest.raises(PodRefused, match="^timed out waiting for streams of request 0$"):
        kubelet.session.read(handle)


def test_settings_window_updates_and_server_pings(kubelet: Kubelet) -> None:
    kubelet.session.open(80)
    kubelet.received()
    kubelet.send(Settings(((0, 7, 65536),)), WindowUpdate(3, 1000), Ping(2))
    assert kubelet.received() == [Ping(2)]  # the server's PING (even id) is echoed, the rest ignored
    kubelet.send(SynStream(2, ()))
    assert kubelet.received() == [RstStream(2, RstStatus.REFUSED_STREAM)]


def test_a_quiet_session_pings_and_an_answer_keeps_it(kubelet: Kubelet) -> None:
    session = kubelet.session
    assert session.timer(10.0) == 30.0  # nothing to do before the interval
    assert kubelet.received() == []
    assert session.timer(30.0) == 45.0
    assert kubelet.received() == [Ping(1)]
    kubelet.send(Ping(1), now=31.0)
    assert session.timer(45.0) == 61.0  # answered: next PING after another quiet interval
    assert session.state is SessionState.OPEN
    assert session.timer(61.0) == 76.0
    assert kubelet.received() == [Ping(3)]


def test_an_unanswered_ping_kills_the_session_and_its_connections(kubelet: Kubelet) -> None:
    session = kubelet.session
    handle = session.open(80)
    kubelet.received()
    assert session.timer(30.0) == 60.0  # we sent (the SYN_STREAMs): not quiet yet
    assert session.timer(60.0) == 75.0
    assert kubelet.received() == [Ping(1)]
    assert session.timer(74.9) == 75.0
    assert session.timer(75.0) is None
    assert session.state is SessionState.DEAD and session.finished
    with pytest.raises(SessionLost, match="PING"):
        session.read(handle)
    assert handle in session.take_changed()
    with pytest.raises(SessionLost):
        session.open(80)


def test_a_ping_is_not_judged_while_we_send_or_our_writes_wait(kubelet: Kubelet) -> None:
    # spdystream answers PINGs on a frame worker that DATA for a slow pod can block: silence
    # while we upload is not a dead path (TCP's user timeout judges that).
    session = kubelet.session
    handle = session.open(80)
    session.timer(30.0)
    session.timer(60.0)
    assert kubelet.received()[-1] == Ping(1)
    session.send(handle, b"upload")
    assert session.timer(75.0) == 105.0
    assert session.state is SessionState.OPEN
    assert session.timer(105.0) == 120.0  # quiet again: a new PING
    assert kubelet.received()[-1] == Ping(3)
    assert session.timer(120.0, write_backlog=True) == 150.0
    assert session.state is SessionState.OPEN


def test_a_stalled_session_is_not_judged_by_ping(kubelet: Kubelet) -> None:
    session = kubelet.session
    handle = session.open(80)
    kubelet.send(Data(3, bytes(1000)), now=1.0)
    assert session.paused
    assert session.timer(100.0) == 130.0  # bytes wait unread: no PING, no death
    assert session.state is SessionState.OPEN
    assert session.read(handle) == bytes(1000)
    assert not session.paused


def test_buffers_are_bounded_per_connection(kubelet: Kubelet) -> None:
    session = kubelet.session
    slow, other = session.open(80), session.open(80)
    kubelet.send(Data(3, bytes(600)), Data(7, bytes(10)))
    assert not session.paused and session.buffered(slow) == 600
    kubelet.send(Data(3, bytes(600)))
    assert session.paused  # the I/O side stops reading the socket now
    assert session.read(other) == bytes(10)
    assert session.paused
    assert session.read(slow) == bytes(1200)  # what is buffered comes in one piece
    assert not session.paused and session.buffered(slow) == 0


def test_goaway_lets_open_connections_finish_and_takes_no_new_ones(kubelet: Kubelet) -> None:
    session = kubelet.session
    kept, lost = session.open(80), session.open(80)
    kubelet.received()
    kubelet.send(GoAway(3))  # the server took the first pair only
    assert not session.accepting and session.state is SessionState.DRAINING
    with pytest.raises(SessionLost, match="before it took"):
        session.read(lost)
    with pytest.raises(SessionLost):
        session.open(80)
    kubelet.send(Data(3, b"still"), Data(3, b"", fin=True))
    assert session.read(kept) == b"still"
    assert session.read(kept) == b""
    session.close(lost)
    assert not session.finished
    session.close(kept)
    assert session.finished


def test_our_goaway_drains(kubelet: Kubelet) -> None:
    session = kubelet.session
    handle = session.open(80)
    kubelet.received()
    session.go_away()
    assert kubelet.received() == [GoAway(0)]
    assert not session.finished
    session.close(handle)
    assert session.finished


@pytest.mark.parametrize("junk", [b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01", b"\x80\x03\x00\x01\x02"
                                  b"\xff\xff\xff" + bytes(8)])
def test_bytes_that_are_not_spdy_kill_the_session(kubelet: Kubelet, junk: bytes) -> None:
    handle = kubelet.session.open(80)
    kubelet.received()
    kubelet.session.receive_data(junk, 1.0)
    assert kubelet.session.state is SessionState.DEAD
    with pytest.raises(SessionLost, match="broke the SPDY protocol"):
        kubelet.session.read(handle)


def test_the_servers_eof_kills_the_session(kubelet: Kubelet) -> None:
    handle = kubelet.session.open(80)
    kubelet.send(Data(3, b"last"))
    kubelet.session.receive_eof()
    assert kubelet.session.read(handle) == b"last"  # what came before the end is still delivered
    with pytest.raises(SessionLost, match="closed"):
        kubelet.session.read(handle)
