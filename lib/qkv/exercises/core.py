"""The checker framework: verdicts, property-test cases and comparisons.

A checker is a function ``check_<name>(fn) -> Verdict`` that builds a list of
:class:`Case` objects and hands them to :func:`run_checks`. Each case calls the
reader's ``fn`` on seeded inputs and raises :class:`Mismatch` with a
counter-example when the answer is wrong.

:func:`run_checks` does what every checker needs, once:

- *not attempted yet* only for the untouched stub, a function whose whole body is
  ``raise NotImplementedError`` (a docstring and comments allowed); a
  ``NotImplementedError`` raised by a partial solution is a failure like any other;
- every call of ``fn`` is guarded: the tensors passed in are compared before and
  after the call, and a function that changes them in place fails with a message
  that names the argument;
- each case runs under a time limit (``time_limit`` seconds, default
  :data:`TIME_LIMIT`), so an infinite loop gives "timed out" instead of a hung cell;
- any exception from the reader's code, ``SystemExit`` included, becomes a verdict;
  only ``KeyboardInterrupt`` (the user pressing stop) goes through;
- each case runs in a fixed global state (default dtype float32, seeded CPU generator)
  and the caller's default dtype and random generators are restored afterwards
  (:func:`kernel_state_kept`), so the verdict is the same in any kernel and the
  checker changes nothing in it.
"""

from __future__ import annotations

import ast
import dis
import inspect
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = [
    "Case",
    "Mismatch",
    "Verdict",
    "assert_close",
    "run_checks",
    "kernel_state_kept",
    "TIME_LIMIT",
]

Status = Literal["passed", "not attempted", "failed"]

#: Seconds each case may take before the verdict is "timed out". The cases take milliseconds to
#: about a second; the margin keeps a busy CI machine from timing out a right answer.
TIME_LIMIT = 20.0


class Mismatch(AssertionError):
    """Raised by a :class:`Case` when the reader's function gives a wrong answer."""


@dataclass(frozen=True)
class Verdict:
    """The result of a checker: truthy exactly when every case passed."""

    exercise: str
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        symbol = {"passed": "✅", "not attempted": "✏️", "failed": "❌"}[self.status]
        label = "not attempted yet" if self.status == "not attempted" else self.status
        return f"{symbol} {self.exercise}: {label}. {self.detail}"

    __repr__ = __str__


@dataclass(frozen=True)
class Case:
    """One property test: ``run(fn)`` raises :class:`Mismatch` if ``fn`` is wrong."""

    name: str
    run: Callable[[Callable], None]


def run_checks(
    exercise: str, fn: Callable, cases: Iterable[Case], *, time_limit: float | None = TIME_LIMIT
) -> Verdict:
    """Run ``cases`` against the reader's ``fn`` and stop at the first failure.

    Args:
        exercise: the name shown in the verdict.
        fn: the reader's function.
        cases: the property tests; each gets ``fn`` wrapped so that changing an
            input tensor in place raises :class:`Mismatch`.
        time_limit: seconds per case, or ``None`` for no limit.

    The time limit runs each case in a daemon thread, which works the same in
    Jupyter, Colab and a plain interpreter on Linux, macOS and Windows (signals
    work only in the main thread and not on Windows). Python cannot stop a
    thread: a call that timed out keeps running in the background until it
    returns (an infinite loop keeps one CPU core busy until the kernel restarts);
    being a daemon thread, it never keeps the interpreter from exiting.
    """
    if not callable(fn):
        raise TypeError(f"expected the function you wrote, got {type(fn).__name__}")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds or None, got {time_limit!r}")
    if _is_untouched_stub(fn):
        return Verdict(exercise, "not attempted", "Replace `raise NotImplementedError`.")
    guarded = _InputGuard(fn)
    n_passed = 0
    for case in cases:
        with kernel_state_kept():
            finished, error = _call_with_time_limit(case.run, guarded, time_limit)
        if not finished:
            return Verdict(
                exercise,
                "failed",
                f"Case {case.name!r} timed out after {time_limit:g} s (an endless loop?). "
                "The call goes on in the background; restart the kernel if it slows you down.",
            )
        if isinstance(error, KeyboardInterrupt):
            raise error
        if isinstance(error, Mismatch):
            return Verdict(exercise, "failed", f"First counter-example ({case.name}): {error}")
        if error is not None:  # the reader's code crashed (or exited): report it, do not re-raise
            message = f": {error}" if str(error) else ""
            return Verdict(
                exercise, "failed", f"Case {case.name!r} raised {type(error).__name__}{message}"
            )
        n_passed += 1
    return Verdict(exercise, "passed", f"All {n_passed} checks agree with the reference.")


@contextmanager
def kernel_state_kept() -> Iterator[None]:
    """Run a block in a fixed global state and give the caller's state back afterwards.

    Inside: the default dtype is float32 and the CPU generator is seeded with 0, so a
    verdict does not depend on what the notebook did before (a chapter that set the
    default dtype to float64, or drew random numbers). Afterwards the caller's default
    dtype and the states of the global CPU and CUDA generators are restored: a checker
    leaves no trace in the reader's kernel.
    """
    dtype = torch.get_default_dtype()
    cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(0)
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)


def _call_with_time_limit(
    run: Callable[[Callable], None], fn: Callable, time_limit: float | None
) -> tuple[bool, BaseException | None]:
    """Run ``run(fn)`` in a daemon thread; return (finished in time?, what it raised)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            run(fn)
        except BaseException as err:  # noqa: BLE001 (SystemExit too: it becomes a verdict)
            outcome.append(err)
        else:
            outcome.append(None)

    worker = threading.Thread(target=target, name="qkv-exercise-case", daemon=True)
    worker.start()
    worker.join(time_limit)
    if worker.is_alive() or not outcome:
        return False, None
    return True, outcome[0]


def _is_untouched_stub(fn: Callable) -> bool:
    """True if ``fn``'s body is only ``raise NotImplementedError`` (after an optional docstring).

    Read from the source with :mod:`ast` when it is available (Jupyter keeps cell
    sources), else from the bytecode: a stub loads no name but NotImplementedError
    and does nothing but raise it.
    """
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:  # a class, a functools.partial, a builtin: not the stub
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _bytecode_only_raises_not_implemented(code)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(functions) != 1:
        return _bytecode_only_raises_not_implemented(code)
    body = functions[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].cause is not None:
        return False
    exc = body[0].exc
    if isinstance(exc, ast.Call) and not exc.keywords:
        exc = exc.func
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


# what `raise NotImplementedError` and `raise NotImplementedError("...")` compile to
_STUB_OPCODES = {
    "RESUME",
    "NOP",
    "CACHE",
    "EXTENDED_ARG",
    "PUSH_NULL",
    "PRECALL",
    "CALL",
    "KW_NAMES",
    "LOAD_GLOBAL",
    "LOAD_NAME",
    "LOAD_CONST",
    "RAISE_VARARGS",
    "COPY_FREE_VARS",
    "MAKE_CELL",
}


def _bytecode_only_raises_not_implemented(code: Any) -> bool:
    ops = {instruction.opname for instruction in dis.get_instructions(code)}
    return (
        tuple(code.co_names) == ("NotImplementedError",)
        and "RAISE_VARARGS" in ops
        and ops <= _STUB_OPCODES
    )


class _InputGuard:
    """Calls ``fn`` and raises :class:`Mismatch` if it changed a tensor it was given.

    Tensors inside lists, tuples and dicts are compared too. Modules are not: an
    exercise may ask the reader to change a module (tie two of its weights).
    """

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        names = self._argument_names(args, kwargs)
        before = [(name, _tensors(value)) for name, value in names]
        snapshots = [[t.detach().clone() for t in tensors] for _, tensors in before]
        result = self.fn(*args, **kwargs)
        for (name, tensors), copies in zip(before, snapshots, strict=True):
            for tensor, copy in zip(tensors, copies, strict=True):
                if not _same(tensor, copy):
                    raise Mismatch(
                        f"your function changed its input `{name}` in place "
                        "(the caller's tensor); work on a new tensor instead, "
                        "e.g. `x = x * 2` rather than `x *= 2`"
                    )
        return result

    def _argument_names(self, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
        if self.signature is not None:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError:
                pass
            else:
                return list(bound.arguments.items())
        return [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _same(tensor: torch.Tensor, copy: torch.Tensor) -> bool:
    if tensor.shape != copy.shape or tensor.dtype != copy.dtype:
        return False
    return bool(
        torch.equal(tensor, copy)
        or torch.equal(tensor.isnan(), copy.isnan())
        and torch.equal(tensor.nan_to_num(), copy.nan_to_num())
    )


def assert_close(got: object, expected: torch.Tensor, what: str, *, atol: float = 1e-5) -> None:
    """Raise :class:`Mismatch` unless ``got`` is a tensor equal to ``expected`` within ``atol``."""
    if not isinstance(got, torch.Tensor):
        raise Mismatch(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise Mismatch(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if got.dtype != expected.dtype:
        raise Mismatch(f"{what}: expected dtype {expected.dtype}, got {got.dtype}")
    if expected.dtype == torch.bool:
        wrong = (got != expected).nonzero()
        if len(wrong):
            index = tuple(wrong[0].tolist())
            raise Mismatch(
                f"{what}: at index {index} expected {expected[index].item()}, "
                f"got {got[index].item()}"
            )
        return
    if not torch.isfinite(got).all():
        raise Mismatch(f"{what}: contains NaN or infinity")
    error = (got.detach() - expected).abs()
    if error.max() > atol:
        index = tuple(torch.nonzero(error == error.max())[0].tolist())
        raise Mismatch(
            f"{what}: at index {index} expected {expected[index].item():.5g}, "
            f"got {got[index].item():.5g} (tolerance {atol:g})"
        )
