"""The exercise checkers: untouched stubs, wrong answers and right answers."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import torch

from qkv.exercises import (
    Case,
    Mismatch,
    assert_close,
    check_padding_mask,
    check_softmax_jacobian,
    run_checks,
)


def test_padding_mask_reference_passes() -> None:
    verdict = check_padding_mask(lambda lengths, L: torch.arange(L) < lengths[:, None])
    assert verdict.passed, verdict
    assert "passed" in str(verdict)


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        # the opposite convention: True at padding
        (lambda lengths, L: torch.arange(L) >= lengths[:, None], "expected True, got False"),
        # off by one
        (lambda lengths, L: torch.arange(L) <= lengths[:, None], "expected False, got True"),
        # right values, wrong dtype
        (
            lambda lengths, L: (torch.arange(L) < lengths[:, None]).long(),
            "expected dtype torch.bool",
        ),
        # not a tensor at all
        (lambda lengths, L: [[True] * L] * len(lengths), "expected a torch.Tensor, got list"),
    ],
)
def test_padding_mask_wrong_answers_fail_with_a_counter_example(wrong, expected) -> None:
    verdict = check_padding_mask(wrong)
    assert verdict.status == "failed", verdict
    assert expected in verdict.detail


def test_a_crash_in_the_readers_code_is_reported_not_raised() -> None:
    verdict = check_padding_mask(lambda lengths, L: lengths.reshape(7, 7))
    assert verdict.status == "failed" and "raised RuntimeError" in verdict.detail


def test_softmax_jacobian_reference_passes_and_wrong_answers_fail() -> None:
    assert check_softmax_jacobian(lambda p: torch.diag(p) - torch.outer(p, p)).passed
    forgot_outer = check_softmax_jacobian(torch.diag)
    assert forgot_outer.status == "failed" and "expected" in forgot_outer.detail
    assert check_softmax_jacobian(lambda p: torch.diag(p) - p[:, None] * p).passed  # broadcast form


def test_run_checks_counts_cases_and_stops_at_the_first_failure() -> None:
    seen: list[str] = []

    def case(name: str, ok: bool) -> Case:
        def run(fn: object) -> None:
            seen.append(name)
            if not ok:
                raise Mismatch(f"{name} is wrong")

        return Case(name, run)

    assert "All 2 checks" in run_checks("demo", len, [case("a", True), case("b", True)]).detail
    verdict = run_checks("demo", len, [case("c", True), case("d", False), case("e", True)])
    assert verdict.detail == "First counter-example (d): d is wrong" and seen[-1] == "d"
    with pytest.raises(TypeError, match="expected the function you wrote, got int"):
        run_checks("demo", 3, [])


def test_assert_close_reports_shape_value_and_non_finite() -> None:
    expected = torch.zeros(2, 3)
    with pytest.raises(Mismatch, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        assert_close(torch.zeros(3, 2), expected, "x")
    with pytest.raises(Mismatch, match=r"at index \(1, 2\) expected 0, got 0.5"):
        assert_close(torch.tensor([[0.0, 0, 0], [0, 0, 0.5]]), expected, "x")
    with pytest.raises(Mismatch, match="NaN or infinity"):
        assert_close(torch.full((2, 3), float("nan")), expected, "x")
    assert_close(expected + 1e-7, expected, "x")  # within tolerance: no error


def every_checker() -> list:
    import qkv.exercises

    return [getattr(qkv.exercises, n) for n in qkv.exercises.__all__ if n.startswith("check_")]


@pytest.mark.parametrize("check", every_checker(), ids=lambda c: c.__name__)
def test_every_checker_says_not_attempted_for_the_untouched_stub(check) -> None:
    def untouched(*args: object, **kwargs: object) -> None:
        raise NotImplementedError  # your code here

    verdict = check(untouched)
    assert verdict.status == "not attempted" and not verdict, verdict
    assert "not attempted yet" in str(verdict)


# --- the framework: stubs, time limit, exits, in-place changes (issue 10, items 9-13) ---


def _always_passes() -> list[Case]:
    return [Case("calls fn once", lambda fn: fn(torch.zeros(3)))]


def test_only_the_untouched_stub_is_not_attempted() -> None:
    def with_docstring(x):
        """The reader's docstring."""
        raise NotImplementedError("your code here")

    def partial(x):
        if x.sum() > 0:
            return x
        raise NotImplementedError  # the branch the reader has not written yet

    assert run_checks("demo", with_docstring, _always_passes()).status == "not attempted"
    verdict = run_checks("demo", partial, _always_passes())
    assert verdict.status == "failed", verdict
    assert "raised NotImplementedError" in verdict.detail


def test_the_stub_is_recognised_without_its_source() -> None:
    namespace: dict = {}
    exec("def stub(x):\n    raise NotImplementedError\n", namespace)  # no file, no source
    exec("def solved(x):\n    return x\n", namespace)
    exec("def started(x):\n    y = x + 1\n    raise NotImplementedError\n", namespace)
    assert run_checks("demo", namespace["stub"], _always_passes()).status == "not attempted"
    assert run_checks("demo", namespace["solved"], _always_passes()).passed
    assert run_checks("demo", namespace["started"], _always_passes()).status == "failed"


def test_an_endless_loop_times_out() -> None:
    stop = threading.Event()  # lets the test end the runaway thread afterwards

    def endless(x):
        while not stop.is_set():
            pass

    started = time.perf_counter()
    verdict = run_checks("demo", endless, _always_passes(), time_limit=0.5)
    stop.set()
    assert verdict.status == "failed"
    assert "timed out after 0.5 s" in verdict.detail, verdict
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("exit_call", [lambda: sys.exit(3), lambda: exit(), lambda: quit()])
def test_system_exit_gives_a_verdict(exit_call) -> None:
    verdict = run_checks("demo", lambda x: exit_call(), _always_passes())
    assert verdict.status == "failed" and "raised SystemExit" in verdict.detail, verdict


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def interrupted(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_checks("demo", interrupted, _always_passes())


def test_bad_time_limit() -> None:
    with pytest.raises(ValueError, match="time_limit must be > 0 seconds or None, got 0"):
        run_checks("demo", len, [], time_limit=0)


@pytest.mark.parametrize("check", every_checker(), ids=lambda c: c.__name__)
def test_every_checker_reports_inputs_changed_in_place(check) -> None:
    got_tensors: list[bool] = []

    def vandal(*args, **kwargs):
        """Changes every tensor it gets in place, then returns garbage."""
        tensors = [v for v in [*args, *kwargs.values()] if isinstance(v, torch.Tensor)]
        got_tensors.append(bool(tensors))
        with torch.no_grad():
            for t in tensors:
                t.logical_not_() if t.dtype == torch.bool else t.add_(1)
        return None

    verdict = check(vandal)
    assert verdict.status == "failed", verdict
    if any(got_tensors):  # (Q6 passes a module, meant to change; Q15 a config)
        assert "changed its input" in verdict.detail and "in place" in verdict.detail, verdict


def test_in_place_message_names_the_argument_and_sees_inside_lists() -> None:
    def changes_second(a, pair):
        pair[1].mul_(2)
        return a

    cases = [Case("list", lambda fn: fn(torch.ones(2), [torch.ones(2), torch.ones(2)]))]
    verdict = run_checks("demo", changes_second, cases)
    assert "changed its input `pair` in place" in verdict.detail, verdict


# --- Q8: max_len is not lengths.max(), and a sequence may be empty (issue 10, item 9) ---


def test_padding_mask_must_use_max_len_not_the_longest_length() -> None:
    verdict = check_padding_mask(
        lambda lengths, L: torch.arange(int(lengths.max())) < lengths[:, None]
    )
    assert verdict.status == "failed", verdict
    assert "no sequence is full" in verdict.detail and "expected shape" in verdict.detail


def test_padding_mask_must_handle_an_empty_sequence() -> None:
    def via_one_hot(lengths, max_len):  # marks the last real token, then fills to the left
        last = torch.nn.functional.one_hot(lengths - 1, max_len)
        return last.flip(-1).cumsum(-1).flip(-1).bool()

    verdict = check_padding_mask(via_one_hot)
    assert verdict.status == "failed" and "an empty sequence" in verdict.detail, verdict


def _q6_solution(mha):
    mha.w_v = mha.w_k
    return mha


def _q10_solution(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads).transpose(1, 2)


@pytest.mark.parametrize(
    ("checker", "solution"),
    [
        ("check_tie_keys_and_values", _q6_solution),
        ("check_split_heads", _q10_solution),
        ("check_attention_flops", lambda n, d: 8 * n * d**2 + 4 * n**2 * d),
        ("check_gelu", lambda x: x * torch.special.ndtr(x)),
    ],
)
def test_checkers_leave_the_global_generator_and_default_dtype_alone(checker, solution) -> None:
    import qkv.exercises

    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert getattr(qkv.exercises, checker)(solution).passed
    assert torch.equal(torch.get_rng_state(), state), f"{checker} changed the global generator"
    assert torch.get_default_dtype() == torch.float32


def test_the_gelu_verdict_does_not_depend_on_the_default_dtype() -> None:
    from qkv.exercises import check_gelu

    def in_float64(x):  # right values, wrong dtype for float32 input
        return torch.nn.functional.gelu(x.double())

    fresh = check_gelu(in_float64)
    torch.set_default_dtype(torch.float64)  # as the Q18 chapter does before its exercise
    try:
        after_the_chapter = check_gelu(in_float64)
        assert torch.get_default_dtype() == torch.float64  # the caller's, given back
    finally:
        torch.set_default_dtype(torch.float32)
    assert fresh.status == after_the_chapter.status == "failed", (fresh, after_the_chapter)
