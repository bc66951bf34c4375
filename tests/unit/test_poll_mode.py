"""``switch.poll``: the configuration key and the engine's wait decisions (no timing)."""

from __future__ import annotations

import pytest

from vspan.config.load import ConfigError, dump_text, load_text
from vspan.config.poll import PollConfig
from vspan.datapath.arrivals import LEAD
from vspan.datapath.polling import ALWAYS_SPIN, Poller

BAD = [
    ("switch: {poll: {mode: fast}}", "switch.poll.mode: Input should be 'off', 'adaptive' or"),
    ("switch: {poll: {mode: true}}", "switch.poll.mode: Input should be 'off', 'adaptive' or"),
    ("switch: {poll: {busy_us: 0}}", "switch.poll.busy_us: Input should be greater than or"),
    ("switch: {poll: {busy_us: 1000001}}", "switch.poll.busy_us: Input should be less than"),
    ("switch: {poll: {busy_us: true}}", "switch.poll: busy_us: a boolean is not accepted"),
    ("switch: {poll: {busy_us: fifty}}", "switch.poll.busy_us: Input should be a valid integer"),
    ("switch: {poll: {spin: 1}}", "switch.poll.spin: unknown key"),
    ("switch: {poll: adaptive}", "switch.poll: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_poll_setting_is_refused_with_its_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, "switch.yaml")
    assert any(expected in e for e in info.value.errors), info.value.errors


def test_the_default_is_adaptive() -> None:
    poll = load_text("ports: {a: {}}").switch.poll
    assert (poll.mode, poll.busy_us) == ("adaptive", PollConfig().busy_us)


@pytest.mark.parametrize("text", ["off", "'off'", '"off"'])
def test_off_is_off_quoted_or_not(text: str) -> None:
    """YAML 1.1 reads a bare ``off`` as false: it still means the mode ``off``."""
    assert load_text(f"switch: {{poll: {{mode: {text}}}}}").switch.poll.mode == "off"


@pytest.mark.parametrize("mode", ["off", "adaptive", "always"])
def test_the_setting_survives_show_config(mode: str) -> None:
    cfg = load_text(f"switch: {{poll: {{mode: {mode}, busy_us: 75}}}}")
    again = load_text(dump_text(cfg))
    assert again.switch.poll == cfg.switch.poll


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _poller(mode: str, busy_us: int = 50) -> tuple[Poller, FakeClock]:
    clock = FakeClock()
    return Poller(PollConfig.model_validate({"mode": mode, "busy_us": busy_us}), clock), clock


def test_off_always_blocks() -> None:
    p, clock = _poller("off")
    for handled in (0, 5, 0):
        timeout = p.timeout(1.0)
        assert timeout == 1.0
        p.done(timeout, handled, clock())
    assert (p.waits, p.busy_polls, p.busy_frames) == (3, 0, 0)


def test_always_never_blocks_and_counts_empty_polls() -> None:
    p, clock = _poller("always")
    for handled in (0, 3, 0, 0):
        start = clock()
        clock.t += 2e-6
        timeout = p.timeout(1.0)
        assert timeout == 0.0
        p.done(timeout, handled, start)
    assert (p.waits, p.busy_polls, p.busy_frames, p.empty_polls) == (0, 4, 3, 3)
    assert p.empty_seconds == pytest.approx(6e-6)


def test_adaptive_polls_for_the_window_after_frames_then_blocks() -> None:
    p, clock = _poller("adaptive", busy_us=50)
    assert p.timeout(1.0) == 1.0  # idle: block
    p.done(1.0, 0, clock())
    assert p.timeout(1.0) == 1.0  # a wake-up without frames opens no window
    p.done(1.0, 2, clock())  # frames: the window opens
    clock.t += 30e-6
    assert p.timeout(1.0) == 0.0
    p.done(0.0, 0, clock())
    clock.t += 30e-6  # 60 µs after the frames: past the window
    assert p.timeout(1.0) == 1.0
    p.done(1.0, 0, clock())
    assert (p.waits, p.busy_polls, p.empty_polls) == (3, 1, 1)


def test_adaptive_frames_found_by_polling_start_the_window_again() -> None:
    p, clock = _poller("adaptive", busy_us=50)
    p.done(1.0, 1, clock())
    for _ in range(5):  # a frame every 40 µs keeps the engine polling
        clock.t += 40e-6
        assert p.timeout(1.0) == 0.0
        p.done(0.0, 1, clock())
    assert (p.busy_frames, p.waits) == (5, 1)


def test_a_reload_changes_the_mode_and_keeps_the_counters() -> None:
    p, clock = _poller("adaptive")
    p.done(1.0, 1, clock())
    assert p.timeout(1.0) == 0.0
    p.configure(PollConfig(mode="off"))
    assert p.timeout(1.0) == 1.0  # the open window is closed
    p.configure(PollConfig(mode="always"))
    assert p.timeout(1.0) == 0.0
    assert p.stats()["mode"] == "always"
    assert p.stats()["waits"] == 1


@pytest.mark.parametrize(("mode", "expected"), [
    ("off", (3, 0, 0, 0)),  # each further poll is the blocking wait the loop makes next
    ("adaptive", (1, 2, 4, 0)),  # ... the busy polls of the window the frames opened
    ("always", (0, 3, 5, 0)),  # (the first poll too)
])
def test_the_wake_paths_further_polls_count_as_the_loops_next_polls(
        mode: str, expected: tuple[int, int, int, int]) -> None:
    """The native wake path polls again in the same call while frames come (a ping's echo
    is in the ring when the request's send returns): :meth:`Poller.rounds` counts those
    polls as the ones the Python loop would have made next, with their own time."""
    p, clock = _poller(mode, busy_us=200)
    timeout = p.timeout(1.0)
    p.done(timeout, 1, clock())  # the first poll of the call, as the loop counts it
    p.rounds(1.0, [(3, 5e-6), (1, 4e-6)])
    assert (p.waits, p.busy_polls, p.busy_frames, p.empty_polls) == expected
    if mode != "off":
        p.rounds(1.0, [(0, 7e-6)])  # a further poll that found nothing: a busy poll
        assert p.empty_polls == 1 and p.empty_seconds == pytest.approx(7e-6)


def test_the_spin_is_the_rest_of_the_window_and_its_empty_polls_count() -> None:
    """How long the native wake path may poll in C (:meth:`Poller.spin`): the rest of the
    adaptive window, a bounded slice with ``always``, nothing with ``off``; the empty polls
    it made are counted as busy polls that found nothing (:meth:`Poller.spun`)."""
    p, clock = _poller("adaptive", busy_us=200)
    assert p.spin() == 0.0  # no window open
    p.done(1.0, 1, clock())
    clock.t += 50e-6
    assert p.spin() == pytest.approx(150e-6)
    p.spun(7, 140e-6)
    assert (p.busy_polls, p.empty_polls) == (7, 7)
    assert p.empty_seconds == pytest.approx(140e-6)
    assert _poller("always")[0].spin() == ALWAYS_SPIN
    assert _poller("off")[0].spin() == 0.0


def test_predict_is_on_by_default_and_can_be_turned_off() -> None:
    assert load_text("ports: {a: {}}").switch.poll.predict is True
    cfg = load_text("switch: {poll: {mode: adaptive, predict: false}}")
    assert cfg.switch.poll.predict is False
    assert load_text(dump_text(cfg)).switch.poll == cfg.switch.poll
    with pytest.raises(ConfigError) as info:
        load_text("switch: {poll: {predict: sometimes}}", "switch.yaml")
    assert any("switch.poll.predict: Input should be a valid boolean" in e
               for e in info.value.errors), info.value.errors


def _bursts(p: Poller, clock: FakeClock, gap: float, n: int) -> None:
    """``n`` bursts ``gap`` s apart, each woken from a blocking wait (one frame each)."""
    for _ in range(n):
        clock.t += gap
        p.done(1.0, 1, clock.t - gap)


def test_adaptive_blocks_until_a_predicted_window_then_polls_it() -> None:
    """Bursts every 10 ms: after two equal gaps the engine blocks only until 100 µs before
    the next is due (the timeout) and then polls for at most busy_us (the spin of the
    same call); a burst found there counts as a predicted frame and a busy frame, the
    timed wait before it as a blocking wait."""
    p, clock = _poller("adaptive", busy_us=200)
    _bursts(p, clock, 0.010, 3)
    clock.t += 300e-6  # past the window after traffic
    timeout = p.timeout(1.0)
    assert timeout == pytest.approx(0.010 - 300e-6 - LEAD)
    assert p.spin() == pytest.approx(200e-6)  # the window, polled once the wait ends
    assert p.predicted_windows == 1
    waits = p.waits
    clock.t += timeout + 60e-6  # the burst comes 60 µs into the window
    p.waited()  # (what the engine does when the native wake path says it polled)
    p.spun(40, 55e-6)
    p.done(0.0, 1, clock.t - 5e-6)
    assert (p.waits, p.predicted_frames, p.busy_frames) == (waits + 1, 1, 1)
    stats = p.stats()
    assert (stats["predict"], stats["predicted_windows"], stats["predicted_frames"]) == (
        True, 1, 1)


def test_inside_a_predicted_window_the_loop_polls_for_its_rest() -> None:
    """The Python loop (and a wait that ended early) reaches the window itself: timeout 0,
    spin the rest of the window; after it, without frames, it blocks again."""
    p, clock = _poller("adaptive", busy_us=200)
    _bursts(p, clock, 0.010, 3)
    clock.t += 0.010 - LEAD + 50e-6  # 50 µs into the predicted window
    assert p.timeout(1.0) == 0.0
    assert p.spin() == pytest.approx(150e-6)
    clock.t += 150e-6  # the window passed with nothing: no frames, block
    p.done(0.0, 0, clock.t - 150e-6)
    assert p.timeout(1.0) == 1.0 and p.predicted_frames == 0


def test_a_predicted_window_never_outlasts_the_longest_block() -> None:
    """Housekeeping due before the window opens: the wait ends there, without a spin."""
    p, clock = _poller("adaptive", busy_us=200)
    _bursts(p, clock, 0.010, 3)
    clock.t += 300e-6
    assert p.timeout(0.002) == 0.002
    assert p.spin() == 0.0


def test_the_wakeup_time_is_the_bursts_start() -> None:
    """``since`` (the native wake path: seconds from its wake-up to now) dates the burst:
    the window is planned from the wake-up, not from when the accounting ran."""
    p, clock = _poller("adaptive", busy_us=200)
    for _ in range(3):
        clock.t += 0.010
        p.done(1.0, 1, clock.t - 0.010, since=80e-6)  # 80 µs of work after the wake-up
    clock.t += 300e-6
    assert p.timeout(1.0) == pytest.approx(0.010 - 80e-6 - 300e-6 - LEAD)


@pytest.mark.parametrize("config", [{"mode": "adaptive", "predict": False},
                                    {"mode": "off"}])
def test_no_prediction_without_predict_or_outside_adaptive(config: dict[str, object]) -> None:
    p = Poller(PollConfig.model_validate({**config, "busy_us": 200}), clock := FakeClock())
    _bursts(p, clock, 0.010, 5)
    clock.t += 300e-6
    assert p.timeout(1.0) == 1.0 and p.spin() == 0.0
    assert p.stats()["predicted_windows"] == 0


def test_a_reload_forgets_the_learned_gaps() -> None:
    p, clock = _poller("adaptive", busy_us=200)
    _bursts(p, clock, 0.010, 3)
    p.configure(PollConfig(mode="adaptive", busy_us=200))
    clock.t += 300e-6
    assert p.timeout(1.0) == 1.0


def test_a_predicted_frame_counts_however_late_its_accounting_runs() -> None:
    """A frame found by polling a predicted window is a predicted frame even when the
    engine accounts for it long after the window closed (preempted on a busy CPU); one a
    blocking wait brought before the window opened is not."""
    p, clock = _poller("adaptive", busy_us=200)
    _bursts(p, clock, 0.010, 3)
    clock.t += 300e-6
    timeout = p.timeout(1.0)
    p.spin()
    clock.t += timeout + 5e-3  # found in the window, accounted 5 ms later
    p.waited()
    p.done(0.0, 1, clock.t - 1e-6)
    assert p.predicted_frames == 1
    clock.t += 0.010 - 5e-3 - 300e-6 - LEAD - 50e-6  # the next burst comes before its window
    timeout = p.timeout(1.0)
    assert timeout > 0.0
    p.spin()
    p.done(timeout, 1, clock.t - 1e-6)  # woken from the timed wait: not predicted
    assert p.predicted_frames == 1
