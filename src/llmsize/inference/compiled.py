"""A persistent cache of compiled models, keyed by the model's structure.

nutpie samples a PyMC model through two C callbacks compiled with Numba: the
log density with its gradient, and the "expand" function that computes the
deterministics of a draw. Compiling them is most of a warm run's set-up
(PyTensor's own kernel cache already holds the pieces, but
``nutpie.compile_pymc_model`` still rewrites both graphs and links and
optimises two large LLVM modules every time). :func:`compile_model` keeps the
finished callbacks on disk instead:

- **Key.** :func:`model_key` is a sha256 of the model's *structure*: the graph
  of its joint log density, of its deterministics and of its free random
  variables (every operation, type, name and constant, so the design's index
  arrays and fixed sizes are in it), the lengths of its dimensions, the shapes
  but not the values of its data containers (``pm.Data``: the observations
  and the hypothesis' prior parameters, :func:`llmsize.inference.model.prior_data`),
  and the versions of Python, NumPy, Numba, llvmlite, PyTensor, PyMC, nutpie
  and llmsize, the CPU Numba compiles for and :data:`CACHE_FORMAT`. The same
  model with other observations, or under a hypothesis that changes only
  prior values, has the same key; refitting it compiles nothing.
- **Entry.** ``<cache dir>/compiled/<key>/`` holds ``meta.json`` (dimensions,
  variable names and shapes, data containers, the initial point's jitter) and Numba's
  cache files of the two callbacks. An entry is written in a temporary folder
  and renamed into place whole, so a reader never sees half an entry.
- **Two cores for a cold compile.** Numba compiles one function at a time in a
  process, so the expand callback is compiled by a forked child into the entry
  while this process compiles the log density (Linux; elsewhere one after the
  other), and then loaded from the entry like a warm one. On the default model
  that takes the expand callback's 20-25 s off a cold compile.
- **Safety.** An entry is used only if its ``meta.json`` parses, names the
  same key and format, and both callbacks load from Numba's cache (whose own
  index also checks the Numba version and the CPU). Anything else (a missing,
  truncated or corrupt file, an entry from another version) is logged, the
  entry removed and the model compiled afresh; a cache folder that cannot be
  written only costs the compile.
- **Same numbers, cold or warm.** Kernels are compiled without Numba's
  ``fastmath`` (:func:`exact_math`). With it (PyTensor's default), a process
  that compiled the kernels and one that loaded the very same kernels from
  PyTensor's cache computed gradients that differed by about 1e-15 in a quarter
  of their entries (while reloading them inside the compiling process changed
  nothing), and through the chaotic NUTS trajectories every draw differed. The
  likely mechanism: with ``reassoc`` and ``contract`` LLVM optimises a shared
  helper differently in each module that inlines it, and which copy a call
  binds to depends on what the process compiled or loaded first. Without
  ``fastmath`` every copy computes the same IEEE result: cold and warm runs
  give the same draws, bit for bit, at the same speed (the log density and
  gradient of the default model, 1,712 dimensions, take about 0.6 ms either
  way on the 2-core development machine).

The initial point of each chain is the one nutpie computes (PyMC's support
point of each free variable, transformed, plus U(-1, 1) jitter from the chain's
seed). The support point depends on the prior parameters, so it is computed
from the live model on every load (PyMC's own function, a fraction of a
second); the entry stores only which seed stream jitters which variable,
checked against PyMC's own function when the entry is made.

The cache folder is ``$LLMSIZE_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmsize``,
else ``~/.cache/llmsize``; ``LLMSIZE_CACHE_DIR=off`` turns the cache off (the
model is then compiled the same way, only not kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Version of the entry layout and of the callback sources; part of every key.
CACHE_FORMAT = 2

#: Environment variable naming the cache folder (``off`` disables the cache).
ENV_VAR = "LLMSIZE_CACHE_DIR"

#: Entries kept (about 2.5 MB each for the default model); the least recently
#: used go first.
MAX_ENTRIES = 64

#: Staging folders older than this (seconds) were left by a process that died.
_STALE_STAGING_S = 3600.0

#: Packages whose versions are part of every key.
_KEY_PACKAGES = ("numpy", "numba", "llvmlite", "pytensor", "pymc", "nutpie", "llmsize")

#: dtypes a data container may have, as written in the callback sources.
_DTYPES = {
    "float64": "np.float64",
    "float32": "np.float32",
    "int64": "np.int64",
    "int32": "np.int32",
    "int16": "np.int16",
    "int8": "np.int8",
    "uint64": "np.uint64",
    "uint32": "np.uint32",
    "uint8": "np.uint8",
    "bool": "np.bool_",
}


class Uncacheable(Exception):
    """The model cannot be described or compiled by this module (compile it as nutpie does)."""


# --------------------------------------------------------------------------- where


def default_cache_dir() -> Path | None:
    """The cache folder: ``$LLMSIZE_CACHE_DIR``, ``$XDG_CACHE_HOME/llmsize`` or ``~/.cache/llmsize``.

    Returns
    -------
    Path or None
        ``None`` when ``LLMSIZE_CACHE_DIR`` is ``off`` (or empty): no cache.
    """
    value = os.environ.get(ENV_VAR)
    if value is not None:
        if value.strip().lower() in ("", "off", "0", "false", "no"):
            return None
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llmsize"


# --------------------------------------------------------------------------- key


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def environment_fingerprint() -> dict[str, Any]:
    """Everything besides the model that the compiled code depends on.

    Returns
    -------
    dict
        Cache format, Python and package versions, the CPU Numba targets
        (triple, name and features) and the PyTensor settings that change
        compiled code.
    """
    import pytensor
    from numba.core.registry import cpu_target

    return {
        "format": CACHE_FORMAT,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "packages": {name: _package_version(name) for name in _KEY_PACKAGES},
        "cpu": [str(x) for x in cpu_target.target_context.codegen().magic_tuple()],
        "floatX": pytensor.config.floatX,
        "optimizer_including": pytensor.config.optimizer_including,
        "optimizer_excluding": pytensor.config.optimizer_excluding,
    }


def _array_digest(value) -> str:
    arr = np.ascontiguousarray(np.asarray(value))
    if arr.dtype.kind == "O":
        raise Uncacheable("an object-valued constant")
    digest = hashlib.sha256(arr.tobytes()).hexdigest()
    return f"array[{arr.dtype.str}{list(arr.shape)}]{digest}"


def _describe(value) -> str:  # noqa: PLR0911 (one return per kind of value described)
    """A text that names ``value`` the same way in every process (op properties, constants)."""
    from pytensor.graph.op import Op

    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return repr(value)
    if isinstance(value, np.generic | np.ndarray):
        return _array_digest(value)
    if isinstance(value, np.dtype):
        return f"dtype({value.str})"
    if isinstance(value, type):
        return f"type({value.__module__}.{value.__qualname__})"
    if isinstance(value, tuple | list):
        return "(" + ",".join(_describe(v) for v in value) + ")"
    if isinstance(value, frozenset | set):
        return "{" + ",".join(sorted(_describe(v) for v in value)) + "}"
    if isinstance(value, dict):
        items = sorted((_describe(k), _describe(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, slice):
        return f"slice({_describe(value.start)},{_describe(value.stop)},{_describe(value.step)})"
    if isinstance(value, Op):
        return _describe_op(value)
    text = f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"
    if " at 0x" in text:
        # A repr with an address differs from process to process: such a key
        # would never be found again, and two different objects could share it.
        raise Uncacheable(f"no stable description of {type(value).__qualname__}")
    return text


def _describe_op(op) -> str:
    props = getattr(op, "__props__", None)
    name = f"{type(op).__module__}.{type(op).__qualname__}"
    if props is None:
        text = f"{name}:{op}"
        if " at 0x" in text:
            raise Uncacheable(f"no stable description of {type(op).__qualname__}")
        return text
    return name + "{" + ",".join(f"{p}={_describe(getattr(op, p))}" for p in props) + "}"


def graph_description(outputs, *, data_vars=()) -> list[str]:
    """One line per variable and operation of the graph of ``outputs``, in a fixed order.

    Parameters
    ----------
    outputs : list of pytensor Variable
        The graph's outputs.
    data_vars : iterable of SharedVariable
        Shared variables whose values may change without changing the
        compiled code (``pm.Data`` observations): only their shapes are
        described. Other shared variables (e.g. dimension lengths) are
        described by value; random generators by type only.

    Returns
    -------
    list of str
        Lines that refer to earlier variables by number; equal lists mean
        equal graphs up to the values of ``data_vars``.
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import toposort
    from pytensor.tensor.random.type import RandomType

    data_ids = {id(v) for v in data_vars}
    number: dict[int, int] = {}
    lines: list[str] = []

    def leaf(var) -> str:
        kind = f"{var.name!r}:{var.type}"
        if isinstance(var, Constant):
            return f"const {kind}={_describe(var.data)}"
        if isinstance(var, SharedVariable):
            if isinstance(var.type, RandomType):
                return f"rng {kind}"
            value = var.get_value(borrow=True)
            if id(var) in data_ids:
                return f"data {kind} shape={list(np.shape(value))}"
            return f"shared {kind}={_describe(value)}"
        return f"input {kind}"

    def ref(var) -> int:
        key = id(var)
        if key not in number:
            number[key] = len(number)
            lines.append(f"v{number[key]} = {leaf(var)}")
        return number[key]

    outputs = list(outputs)
    for node in toposort(outputs):
        args = ",".join(f"v{ref(inp)}" for inp in node.inputs)
        outs = []
        for out in node.outputs:
            number[id(out)] = len(number)
            outs.append(f"v{number[id(out)]}:{out.name!r}:{out.type}")
        lines.append(f"{' '.join(outs)} = {_describe_op(node.op)}({args})")
    lines.append("outputs " + ",".join(f"v{ref(o)}" for o in outputs))
    return lines


def key_outputs(model) -> list:
    """The graphs the key describes: joint log density, recorded values, free variables."""
    return [model.logp(), *model.unobserved_value_vars, *model.free_RVs]


def model_description(model, outputs=None) -> list[str]:
    """What of a PyMC model the compiled callbacks depend on, as text lines.

    The joint log density (transforms and Jacobians included), the
    deterministics and transformed values nutpie records, the free random
    variables (their support points start the chains), their initial-value
    strategies, the dimension lengths and ``check_bounds``. Values in ``pm.Data``
    containers (observations, prior parameters) enter by shape only: the support
    point they move is computed afresh at every load (:func:`support_point`).

    Parameters
    ----------
    model : pymc.Model
    outputs : list, optional
        :func:`key_outputs` of ``model``, if already built.

    Returns
    -------
    list of str
    """
    free = list(model.free_RVs)
    lines = [f"check_bounds={model.check_bounds}"]
    for rv in free:
        value = model.rvs_to_values[rv]
        init = model.rvs_to_initial_values.get(rv)
        lines.append(f"free {rv.name!r} value={value.name!r} init={_describe(init)}")
    for name in sorted(model.dim_lengths):
        length = model.dim_lengths[name]
        get = getattr(length, "get_value", None)
        lines.append(f"dim {name!r}={_describe(get() if get else getattr(length, 'data', None))}")
    if outputs is None:
        outputs = key_outputs(model)
    lines += graph_description(outputs, data_vars=list(model.data_vars))
    return lines


def model_key(model, outputs=None) -> str:
    """sha256 of the model's structure and of the compiling environment.

    Parameters
    ----------
    model : pymc.Model
    outputs : list, optional
        :func:`key_outputs` of ``model``, if already built.

    Returns
    -------
    str
        64 hexadecimal digits.

    Raises
    ------
    Uncacheable
        If some part of the graph has no description that is stable across
        processes.
    """
    h = hashlib.sha256()
    h.update(json.dumps(environment_fingerprint(), sort_keys=True).encode())
    h.update(_CALLBACK_TEMPLATE.encode())
    for line in model_description(model, outputs):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- exact math


@contextlib.contextmanager
def exact_math() -> Iterator[None]:
    """Compile PyTensor's Numba kernels without ``fastmath`` inside the block.

    See the module docstring: with ``fastmath``, a run that compiled its
    kernels and a run that loaded them from a cache give different draws.
    """
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        yield


@contextlib.contextmanager
def fast_argument_typing() -> Iterator[None]:
    """Memoise Numba's typing of array and tuple arguments inside the block.

    Forward sampling (prior and posterior predictive, log prior) calls a
    compiled PyTensor function once per draw, 12,000 times. Numba types each
    call's arguments; its fast C path skips 0-d arrays (every scalar
    parameter), so each call typed about 40 arguments in Python, and the tuple
    they come in, building and interning the same Numba types again: most of
    the time of the posterior predictive draws. Inside this block the type of
    a plain ``ndarray`` is looked up by (dtype, ndim, layout, writeable) and
    that of a tuple by its elements' types, which is what Numba's own rules
    depend on, so every call gets the very type objects it got before, and
    the results are unchanged.
    """
    from numba.core.typing.typeof import typeof_impl

    typeof_array = typeof_impl.dispatch(np.ndarray)
    typeof_tuple = typeof_impl.dispatch(tuple)
    arrays: dict = {}
    tuples: dict = {}

    def cached_array(val, c):
        if type(val) is not np.ndarray:
            return typeof_array(val, c)
        flags = val.flags
        key = (val.dtype, val.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable)
        found = arrays.get(key)
        if found is None:
            found = arrays[key] = typeof_array(val, c)
        return found

    def cached_tuple(val, c):
        if type(val) is not tuple:
            return typeof_tuple(val, c)
        elements = tuple(typeof_impl(v, c) for v in val)
        if any(t is None for t in elements):
            return None
        key = tuple(map(id, elements))
        found = tuples.get(key)
        if found is None:
            # The element types are kept with the result, so their ids stay theirs.
            found = tuples[key] = (elements, typeof_tuple(val, c))
        return found[1]

    typeof_impl.register(np.ndarray, cached_array)
    typeof_impl.register(tuple, cached_tuple)
    try:
        yield
    finally:
        typeof_impl.register(np.ndarray, typeof_array)
        typeof_impl.register(tuple, typeof_tuple)


# --------------------------------------------------------------------------- callbacks

#: Source of the two C callbacks; ``{...}`` fields are filled per model. The
#: return codes are nutpie's: 0 ok, 1 exception, 3 gradient and 4 log density
#: not finite, -1 wrong dimension.
_CALLBACK_TEMPLATE = """
def llmsize_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        ud = carray(user_data_, ({n_user},), np.uint64)
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_dim},))
        logp = carray(logp_, ())
{logp_shared}
        logp_val, grad = inner(x{logp_args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0


def llmsize_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        ud = carray(user_data_, ({n_user},), np.uint64)
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
{expand_shared}
        (values,) = inner(x{expand_args})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


@dataclass(frozen=True)
class SharedSpec:
    """A shared input of the compiled functions (a data container or a dimension length)."""

    name: str
    dtype: str
    ndim: int


def _layout(shared: list[SharedSpec]) -> tuple[dict[str, int], int]:
    """Offsets of each shared input in the ``user_data`` array: a pointer, then its shape."""
    offsets, n = {}, 0
    for spec in shared:
        offsets[spec.name] = n
        n += 1 + spec.ndim
    return offsets, max(n, 1)


def _unpack_lines(names: list[str], shared: list[SharedSpec], offsets: dict[str, int]) -> str:
    by_name = {s.name: s for s in shared}
    lines = []
    for i, name in enumerate(names):
        spec, at = by_name[name], offsets[name]
        shape = "".join(f"int(ud[{at + 1 + d}]), " for d in range(spec.ndim))
        lines.append(
            f"        s{i} = carray(as_pointer(ud[{at}]), ({shape}), {_DTYPES[spec.dtype]})"
        )
    return "\n".join(lines)


def callback_source(
    n_dim: int,
    n_expanded: int,
    shared: list[SharedSpec],
    logp_shared: list[str],
    expand_shared: list[str],
) -> str:
    """The Python source of the two callbacks (``llmsize_logp`` and ``llmsize_expand``).

    Parameters
    ----------
    n_dim, n_expanded : int
        Length of the unconstrained point and of an expanded draw.
    shared : list of SharedSpec
        Every shared input, in ``user_data`` order.
    logp_shared, expand_shared : list of str
        Names of the shared inputs of each compiled function, in its argument
        order (after the point).

    Returns
    -------
    str
    """
    offsets, n_user = _layout(shared)
    return _CALLBACK_TEMPLATE.format(
        n_dim=n_dim,
        n_expanded=n_expanded,
        n_user=n_user,
        logp_shared=_unpack_lines(logp_shared, shared, offsets) or "        pass",
        expand_shared=_unpack_lines(expand_shared, shared, offsets) or "        pass",
        logp_args="".join(f", s{i}" for i in range(len(logp_shared))),
        expand_args="".join(f", s{i}" for i in range(len(expand_shared))),
    )


def make_user_data(shared: list[SharedSpec], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The ``user_data`` array the callbacks read: per shared input, its address and shape.

    ``arrays`` must stay alive as long as the array is in use.
    """
    offsets, n_user = _layout(shared)
    user_data = np.zeros(n_user, dtype=np.uint64)
    for spec in shared:
        arr = arrays[spec.name]
        at = offsets[spec.name]
        user_data[at] = arr.ctypes.data
        user_data[at + 1 : at + 1 + spec.ndim] = arr.shape
    return user_data


#: Callback functions made from generated source, mapped to the cache folder
#: their compiled code lives in (read by ``_EntryLocator``).
_FUNCTION_DIRS: weakref.WeakKeyDictionary[Callable, str] = weakref.WeakKeyDictionary()
_LOCATOR_REGISTERED = False


def _register_locator() -> None:
    """Teach Numba's cache where the code of our generated callbacks lives (once)."""
    global _LOCATOR_REGISTERED
    if _LOCATOR_REGISTERED:
        return
    from numba.core.caching import CacheImpl, _CacheLocator

    class _EntryLocator(_CacheLocator):
        """Numba cache locator for callbacks registered in ``_FUNCTION_DIRS``."""

        def __init__(self, py_func, py_file, path):
            self._py_file = py_file
            self._path = path

        def ensure_cache_path(self):
            os.makedirs(self._path, exist_ok=True)

        def get_cache_path(self):
            return self._path

        def get_source_stamp(self):
            return CACHE_FORMAT

        def get_disambiguator(self):
            return "entry"

        @classmethod
        def from_function(cls, py_func, py_file):
            path = _FUNCTION_DIRS.get(py_func)
            return None if path is None else cls(py_func, py_file, path)

    CacheImpl._locator_classes.insert(0, _EntryLocator)  # type: ignore[arg-type]  # Numba types the list by its base
    _LOCATOR_REGISTERED = True


@functools.cache
def _as_pointer():
    """A Numba intrinsic turning an integer address into a ``void*``."""
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def as_pointer(typingctx, address):
        sig = types.voidptr(address)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return sig, codegen

    return as_pointer


def _callbacks(source: str, inner_logp, inner_expand, folder: Path | None):
    """Compile the two callbacks of ``source``, or load them from ``folder``.

    Parameters
    ----------
    source : str
        From :func:`callback_source`.
    inner_logp, inner_expand : numba dispatcher or None
        PyTensor's compiled log density (with gradient) and expand function.
        ``None`` when the callbacks must come from the cache: a miss then
        fails to compile and raises.
    folder : Path or None
        Where Numba keeps the callbacks' compiled code; ``None``: nowhere.

    Returns
    -------
    tuple
        ``(logp_cfunc, expand_cfunc)``, each with ``.address`` and ``.cache_hits``.
    """
    import numba

    if folder is not None:
        _register_locator()
    code = compile(source, "<llmsize-cache>", "exec")
    # ``__name__`` names an importable module: Numba rebuilds a cached
    # function's environment from it.
    base = {"__name__": __name__, "np": np, "carray": numba.carray, "as_pointer": _as_pointer()}
    funcs = {}
    for name, inner in (("llmsize_logp", inner_logp), ("llmsize_expand", inner_expand)):
        namespace: dict[str, Any] = {**base, "inner": inner}
        exec(code, namespace)  # our own generated source, never input
        funcs[name] = namespace[name]
        if folder is not None:
            _FUNCTION_DIRS[funcs[name]] = str(folder)
    u64, f64p = numba.types.uint64, numba.types.CPointer(numba.types.double)
    logp_sig = numba.types.int64(u64, f64p, f64p, f64p, numba.types.voidptr)
    expand_sig = numba.types.int64(u64, u64, f64p, f64p, numba.types.voidptr)
    cache = folder is not None

    def expand_callback():
        return numba.cfunc(expand_sig, cache=cache)(funcs["llmsize_expand"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)
        # A fresh compile of both into a cache folder: the expand callback is
        # compiled by a child process into the folder while this one compiles
        # the log density, and then loaded from it (compiled here if the child failed).
        child = _fork(expand_callback) if cache and inner_expand is not None else None
        try:
            logp = numba.cfunc(logp_sig, cache=cache)(funcs["llmsize_logp"])
        except BaseException:
            if child is not None:
                _kill(child)
            raise
        if child is not None:
            _reap(child)
        expand = expand_callback()
    return logp, expand


#: Seconds to wait for the child compiling the expand callback once the log density
#: is compiled (it takes about a third as long); past it, the child is killed and
#: this process compiles the callback itself.
CHILD_COMPILE_WAIT_S = 300.0


def _fork(work: Callable[[], Any]) -> int | None:
    """Run ``work`` in a forked child that exits when it is done; its pid.

    Numba compiles one function at a time per process (a global lock, and the
    GIL), so a cold compile of the two callbacks uses one core. A child forked
    before either is compiled shares the parent's PyTensor functions and cache
    folder, compiles the expand callback into the folder, and leaves the
    parent's state untouched. ``None`` where ``os.fork`` is missing or fails,
    and outside Linux (where forking a process that has loaded system
    frameworks is unsafe); the caller then compiles both itself.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return None
    try:
        with warnings.catch_warnings():
            # Python warns on fork in a process with threads (a lock held by
            # another thread at the fork stays held in the child). The child only
            # compiles with Numba, whose lock this thread does not hold here, and
            # a child that hangs is killed by _reap.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        log.info("compiling the callbacks one after the other (fork failed: %s)", exc)
        return None
    if pid:
        return pid
    code = 1
    try:
        work()
        code = 0
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def _reap(pid: int, wait_s: float = CHILD_COMPILE_WAIT_S) -> bool:
    """Wait for the child of :func:`_fork` up to ``wait_s`` seconds; whether it
    succeeded. A child still running then is killed.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:
            _kill(pid)
            log.warning("the child compiling the expand callback did not finish; compiling it here")
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _kill(pid: int) -> None:
    """End the child of :func:`_fork` now (the compile it served failed or hung)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------- initial point


def initial_point_function(
    base: np.ndarray, jitter: list[tuple[int, int, int]], n_streams: int
) -> Callable:
    """Nutpie's initial point: the transformed support point plus U(-1, 1) jitter.

    Parameters
    ----------
    base : ndarray
        The transformed support point, flat.
    jitter : list of (start, stop, stream)
        Each jittered variable's slice of the flat point and which of the
        ``n_streams`` seeds spawned from the chain's seed draws its jitter (as
        ``pymc.initial_point.make_initial_point_fn`` does).
    n_streams : int

    Returns
    -------
    callable
        ``f(seed) -> ndarray``.
    """
    base = np.array(base, dtype=np.float64)

    def initial_point(seed=None):
        streams = np.random.SeedSequence(seed).spawn(n_streams)
        point = base.copy()
        for start, stop, stream in jitter:
            gen = np.random.Generator(np.random.PCG64(streams[stream]))
            point[start:stop] = base[start:stop] + gen.uniform(-1, 1, size=stop - start)
        return point

    return initial_point


def _pymc_initial_point(model, jitter: bool):
    from pymc.initial_point import make_initial_point_fn

    return make_initial_point_fn(
        model=model,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs) if jitter else set(),
        return_transformed=True,
    )


def support_point(model, names: list[str], shapes: list) -> np.ndarray:
    """The transformed support point of ``model``'s free variables, flat, in ``names`` order.

    PyMC's own function without jitter, so a loaded entry and a fresh compile
    start from the same point bit for bit, whatever the prior parameters.
    """
    from nutpie.compile_pymc import _rv_dict_to_flat_array_wrapper

    flat = _rv_dict_to_flat_array_wrapper(
        _pymc_initial_point(model, jitter=False), list(names), [tuple(s) for s in shapes]
    )
    return np.asarray(flat(0), dtype=np.float64)


def _match_jitter(pymc_fn, base, slices, seed: int) -> list[tuple[int, int, int]]:
    """Which seed stream jitters which variable in PyMC's initial point function.

    PyMC reseeds one generator per jittered variable from
    ``SeedSequence(seed).spawn(n)``; the i-th child does not depend on ``n``.
    """
    target = pymc_fn(seed)
    streams = np.random.SeedSequence(seed).spawn(2 * len(slices) + 2)
    jitter = []
    for start, stop in slices:
        if stop == start or np.array_equal(target[start:stop], base[start:stop]):
            continue
        for i, ss in enumerate(streams):
            u = np.random.Generator(np.random.PCG64(ss)).uniform(-1, 1, size=stop - start)
            if np.array_equal(base[start:stop] + u, target[start:stop]):
                jitter.append((start, stop, i))
                break
        else:
            raise Uncacheable("the initial point's jitter could not be reproduced")
    return jitter


# --------------------------------------------------------------------------- the model


def _compiled_model_class():
    from nutpie.compile_pymc import CompiledPyMCModel

    @dataclass(frozen=True)
    class CachedPyMCModel(CompiledPyMCModel):
        """nutpie's compiled model, with callbacks from :mod:`llmsize.inference.compiled`.

        ``logp_func`` and ``expand_func`` (PyTensor functions) are ``None``
        when the callbacks came from the cache. ``with_data`` swaps
        observations as nutpie's does.
        """

        shared_specs: tuple = ()
        cache_key: str = ""
        from_cache: bool = False
        _keep: tuple = field(default=(), repr=False)

        def with_data(self, **updates):
            specs = {s.name: s for s in self.shared_specs}
            arrays = {s.name: self.shared_data[s.name] for s in self.shared_specs}
            for name, new in updates.items():
                if name not in specs:
                    raise KeyError(f"Unknown shared variable: {name}")
                old = arrays[name]
                new = np.array(new, dtype=old.dtype, order="C", copy=True)
                if new.ndim != old.ndim:
                    raise ValueError(f"Shared variable {name} must have rank {old.ndim}")
                new.flags.writeable = False
                arrays[name] = new
            user_data = make_user_data(list(self.shared_specs), arrays)
            return dataclasses.replace(self, shared_data=arrays, user_data=user_data)

    return CachedPyMCModel


_MODEL_CLASS = None


def _model_class():
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        _MODEL_CLASS = _compiled_model_class()
    return _MODEL_CLASS


def _shared_arrays(outputs, specs: list[SharedSpec]) -> dict[str, np.ndarray]:
    """Current values of the shared inputs of ``outputs``, as C-contiguous read-only copies."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors

    found: dict[str, SharedVariable] = {}
    for var in ancestors(outputs):
        if isinstance(var, SharedVariable) and var.name is not None:
            found.setdefault(var.name, var)
    arrays = {}
    for spec in specs:
        shared = found.get(spec.name)
        if shared is None:
            raise Uncacheable(f"shared input {spec.name!r} not in the model")
        arr = np.array(shared.get_value(), order="C", copy=True)
        if arr.dtype.name != spec.dtype or arr.ndim != spec.ndim:
            raise Uncacheable(f"shared input {spec.name!r} changed type")
        arr.flags.writeable = False
        arrays[spec.name] = arr
    return arrays


def _assemble(model, outputs, meta: dict, logp_cf, expand_cf, *, key, from_cache,
              logp_fn=None, expand_fn=None):  # fmt: skip
    """The nutpie model object from the callbacks, ``meta`` and the live model's data."""
    from nutpie.compile_pymc import _prepare_dims_and_coords

    specs = [SharedSpec(**s) for s in meta["shared"]]
    arrays = _shared_arrays(outputs, specs)
    names = meta["names"]
    slices = [slice(a, b) for a, b in meta["slices"]]
    shapes = [tuple(s) for s in meta["shapes"]]
    shape_info = (names, slices, shapes)
    reparameterized = meta["reparameterized_names"]
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    init = meta["initial_point"]
    n_free = init["n_free"]
    base = support_point(model, names[:n_free], shapes[:n_free])
    return _model_class()(
        _n_dim=meta["n_dim"],
        dims=dims,
        _coords=coords,
        _shapes=dict(zip(names, shapes, strict=True)),
        compiled_logp_func=logp_cf,
        compiled_expand_func=expand_cf,
        initial_point_func=initial_point_function(
            base,
            [tuple(j) for j in init["jitter"]],
            init["n_streams"],
        ),
        shared_data=arrays,
        shared_var_keys={spec: spec.name for spec in specs},
        user_data=make_user_data(specs, arrays),
        n_expanded=meta["n_expanded"],
        shape_info=shape_info,
        logp_func=logp_fn,
        expand_func=expand_fn,
        reparameterized_names=reparameterized,
        shared_specs=tuple(specs),
        cache_key=key,
        from_cache=from_cache,
        _keep=(logp_cf, expand_cf),
    )


def _compile_fresh(model, outputs, folder: Path | None):
    """Compile the model as nutpie does, with our callbacks; their code goes to ``folder``.

    Returns
    -------
    tuple
        ``(meta, logp_cfunc, expand_cfunc, logp_fn, expand_fn)``.
    """
    from nutpie.compile_pymc import _make_functions

    (n_dim, n_expanded, logp_fn, expand_fn, flat_init, shape_info, reparameterized) = (
        _make_functions(
            model,
            mode="NUMBA",
            compute_grad=True,
            join_expanded=True,
            pymc_initial_point_fn=_pymc_initial_point(model, jitter=True),
        )
    )
    names, slices, shapes = shape_info
    free_names = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    free_slices = [(int(s.start), int(s.stop)) for s in slices[: len(free_names)]]
    free_shapes = shapes[: len(free_names)]
    base = support_point(model, free_names, free_shapes)
    jitter = _match_jitter(flat_init, base, free_slices, seed=20240601)
    n_streams = max((j[2] for j in jitter), default=-1) + 1
    check = initial_point_function(base, jitter, n_streams)
    for seed in (0, 12345):
        if not np.array_equal(check(seed), flat_init(seed)):
            raise Uncacheable("the initial point could not be reproduced")

    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors

    named: dict[str, set[int]] = {}
    for var in ancestors(outputs):
        if isinstance(var, SharedVariable) and var.name is not None:
            named.setdefault(var.name, set()).add(id(var))
    specs: dict[str, SharedSpec] = {}
    per_function = []
    for fn in (logp_fn, expand_fn):
        own = []
        for var in fn.get_shared():
            value = np.asarray(var.get_value())
            spec = SharedSpec(str(var.name), value.dtype.name, value.ndim)
            if var.name is None or spec.dtype not in _DTYPES:
                raise Uncacheable(f"unsupported shared input {var.name!r} ({spec.dtype})")
            if len(named.get(spec.name, ())) != 1 or spec.name in own:
                raise Uncacheable(f"shared input {spec.name!r} not found once by name")
            if specs.setdefault(spec.name, spec) != spec:
                raise Uncacheable(f"two shared inputs named {spec.name!r}")
            own.append(spec.name)
        per_function.append(own)
    shared = list(specs.values())
    meta = {
        "format": CACHE_FORMAT,
        "n_dim": int(n_dim),
        "n_expanded": int(n_expanded),
        "names": list(names),
        "slices": [[int(s.start), int(s.stop)] for s in slices],
        "shapes": [[int(d) for d in shape] for shape in shapes],
        "reparameterized_names": list(reparameterized),
        "shared": [dataclasses.asdict(s) for s in shared],
        "logp_shared": per_function[0],
        "expand_shared": per_function[1],
        "initial_point": {
            "n_free": len(free_names),
            "jitter": [[int(v) for v in j] for j in jitter],
            "n_streams": n_streams,
        },
    }
    source = callback_source(n_dim, n_expanded, shared, per_function[0], per_function[1])
    logp_cf, expand_cf = _callbacks(source, logp_fn.vm.jit_fn, expand_fn.vm.jit_fn, folder)
    return meta, logp_cf, expand_cf, logp_fn, expand_fn


def _meta_source(meta: dict) -> str:
    shared = [SharedSpec(**s) for s in meta["shared"]]
    return callback_source(
        meta["n_dim"], meta["n_expanded"], shared, meta["logp_shared"], meta["expand_shared"]
    )


def read_meta(entry: Path, key: str) -> dict | None:
    """``entry/meta.json`` if it is a complete entry for ``key`` in this format, else ``None``."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("compiled-model cache entry %s is unreadable (%s); compiling again", entry, exc)
        return None
    required = {"format", "key", "n_dim", "n_expanded", "names", "slices", "shapes",
                "reparameterized_names", "shared", "logp_shared", "expand_shared",
                "initial_point"}  # fmt: skip
    if not isinstance(meta, dict) or not required <= meta.keys():
        log.warning("compiled-model cache entry %s is incomplete; compiling again", entry)
        return None
    if meta["format"] != CACHE_FORMAT or meta["key"] != key:
        log.warning("compiled-model cache entry %s is stale; compiling again", entry)
        return None
    return meta


def _load(model, outputs, entry: Path, key: str):
    """The model from a cache entry, or ``None`` if the entry is missing or unusable."""
    meta = read_meta(entry, key)
    if meta is None:
        return None
    try:
        logp_cf, expand_cf = _callbacks(_meta_source(meta), None, None, entry)
        if logp_cf.cache_hits != 1 or expand_cf.cache_hits != 1:
            raise Uncacheable("callbacks missing from Numba's cache")
        loaded = _assemble(model, outputs, meta, logp_cf, expand_cf, key=key, from_cache=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: compile again
        log.warning("compiled-model cache entry %s is unusable (%s); compiling again", entry,
                    f"{type(exc).__name__}: {exc}".splitlines()[0])  # fmt: skip
        return None
    with contextlib.suppress(OSError):
        os.utime(entry / "meta.json")  # recently used: pruned last
    return loaded


def prune(root: Path, keep: int = MAX_ENTRIES) -> None:
    """Remove all but the ``keep`` most recently used entries under ``root/compiled``,
    and staging folders that a dead process left behind.
    """
    import time

    folder = Path(root) / "compiled"
    try:
        children = list(folder.iterdir())
    except OSError:
        return
    now = time.time()
    entries = []
    for child in children:
        try:
            if child.name.startswith("."):
                if now - child.stat().st_mtime > _STALE_STAGING_S:
                    shutil.rmtree(child, ignore_errors=True)
                continue
            entries.append(((child / "meta.json").stat().st_mtime, child))
        except OSError:
            continue
    entries.sort(reverse=True)
    for _, child in entries[keep:]:
        shutil.rmtree(child, ignore_errors=True)
        log.info("compiled-model cache: removed %s (least recently used)", child)


def compile_model(model, *, cache_dir: Path | str | None = None, use_cache: bool = True):
    """Compile ``model`` for ``nutpie.sample``, reusing a cached compile of the same structure.

    Parameters
    ----------
    model : pymc.Model
    cache_dir : path, optional
        Cache folder; default :func:`default_cache_dir`.
    use_cache : bool
        ``False`` compiles the same way without reading or writing a cache.

    Returns
    -------
    CachedPyMCModel
        A ``nutpie.compile_pymc.CompiledPyMCModel``; its ``from_cache`` tells
        whether the callbacks were loaded, and ``cache_key`` the key. If the
        model cannot be cached at all (see :class:`Uncacheable`), nutpie's own
        ``compile_pymc_model`` result, compiled with :func:`exact_math`.
    """
    import nutpie

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not use_cache:
        root = None
    with exact_math():
        try:
            outputs = key_outputs(model)
            key = model_key(model, outputs)
        except Uncacheable as exc:
            log.info("model not cacheable (%s); compiling with nutpie", exc)
            return nutpie.compile_pymc_model(model)
        entry = root / "compiled" / key if root is not None else None
        if entry is not None and entry.is_dir():
            loaded = _load(model, outputs, entry, key)
            if loaded is not None:
                log.info("compiled model loaded from %s", entry)
                return loaded
            shutil.rmtree(entry, ignore_errors=True)
        staging = None
        if entry is not None:
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(
                    tempfile.mkdtemp(prefix=f".{key[:16]}-", suffix=".partial", dir=entry.parent)
                )
            except OSError as exc:
                log.warning("cannot write the compiled-model cache in %s (%s)", root, exc)
        log.info(
            "compiling the model's log density and gradient with Numba "
            "(a few minutes the first time a model of this structure is run; cached after)"
        )
        t0 = time.perf_counter()
        try:
            meta, logp_cf, expand_cf, logp_fn, expand_fn = _compile_fresh(model, outputs, staging)
            log.info("compiled in %.0f s", time.perf_counter() - t0)
            meta["key"] = key
            compiled = _assemble(model, outputs, meta, logp_cf, expand_cf, key=key,
                                 from_cache=False, logp_fn=logp_fn, expand_fn=expand_fn)  # fmt: skip
        except (Uncacheable, ImportError, AttributeError, TypeError) as exc:
            # Uncacheable, or a nutpie whose internals this module does not know.
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            log.warning("compiled-model cache not used (%s: %s); compiling with nutpie",
                        type(exc).__name__, exc)  # fmt: skip
            return nutpie.compile_pymc_model(model)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        if staging is not None and entry is not None:
            _publish(staging, entry, meta)
        return compiled


def _publish(staging: Path, entry: Path, meta: dict) -> None:
    """Complete ``staging`` with ``meta.json`` and rename it to ``entry`` (all or nothing)."""
    try:
        if sum(p.suffix == ".nbi" for p in staging.iterdir()) != 2:
            # Numba declined to cache the callbacks (e.g. dynamic globals).
            raise Uncacheable("Numba did not cache the callbacks")
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.rename(staging, entry)
        except OSError:
            # Another process published the same key first: keep theirs.
            shutil.rmtree(staging, ignore_errors=True)
            return
        log.info("compiled model cached in %s", entry)
        prune(entry.parent.parent)
    except Exception as exc:  # noqa: BLE001 - a failed write only costs the next compile
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("compiled model not cached (%s: %s)", type(exc).__name__, exc)
