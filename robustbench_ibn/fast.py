"""The fast path: BatchNorm folded into the preceding convolution, and ``torch.compile`` with an explicit fallback.

Both keep the maths and change the float rounding, so predictions may differ from the exact path on near-tied
images; a run that uses them must record it in its protocol (it is part of the fingerprint). The default path
stays exact.

- :func:`fold_batchnorm` returns a folded copy (a ``torch.fx.GraphModule``), never touching the model passed in.
  Pairs are found in an FX trace, i.e. from the data flow: a BatchNorm is folded only when its input is the output of
  a convolution that nothing else reads. The module tree alone (``conv1`` next to ``bn1``) does not say which
  convolution feeds which norm, nor whether a skip connection also reads the convolution's output.
- In an :class:`~robustbench_ibn.models.resnet_ibn.IBN` layer the InstanceNorm half is untouched and the BatchNorm
  half is folded into the convolution's output channels it normalizes: a per-channel affine map of those channels
  alone, so it is exactly as exact as folding a whole BatchNorm. The IN half's channels keep their weights (they
  get a zero bias, and ``x + 0.0 == x``), so the IN sees the very same numbers as before.
- :func:`compile_model` compiles and runs one example batch; when that fails (on CPU, inductor needs a C++
  compiler) it returns the module uncompiled with a warning and a message saying why: never silently.
- :func:`fast_path` is both, as a run uses them (``evaluate(..., fast=True)``, ``robust-eval --fast``): the folded
  network compiled for one batch shape, shorter batches padded to it (:class:`FixedBatch`), and the record of what
  ran that the result's protocol keeps. A network whose outputs depend on the other images of a batch
  (:func:`batch_dependent`: batch-statistics BatchNorm, a module in training mode) is not compiled: padding would
  change its predictions.
- Hooks keep their meaning: a module with forward hooks or pre-hooks is never traced through, and a convolution,
  BatchNorm or IBN layer with hooks is not folded (its hooks would see other values, or not run).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from .models.resnet_ibn import IBN
from .text import listing

__all__ = ["Compiled", "FastPath", "FixedBatch", "Folded", "batch_dependent", "compile_model", "fast_path",
           "fold_batchnorm", "register_foldable_conv"]

# Convolution classes whose forward is F.conv2d(x, self.weight, self.bias, ...) on x or on a fixed zero padding of
# x: folding a BatchNorm into their weight and bias is then exact. A subclass that transforms its weight in forward
# (weight standardization, for one) is not, so subclasses are folded only when declared here.
_FOLDABLE_CONVS: set[type[nn.Conv2d]] = {nn.Conv2d}


def register_foldable_conv(cls: type[nn.Conv2d]) -> type[nn.Conv2d]:
    """Declare a ``nn.Conv2d`` subclass foldable: its forward is ``F.conv2d`` with ``self.weight`` and ``self.bias``
    on the input or on a fixed zero padding of it (TensorFlow "same" padding, for one). Returns ``cls``.

    Example:
        >>> class PaddedConv(nn.Conv2d):
        ...     def forward(self, x):
        ...         return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))
        >>> register_foldable_conv(PaddedConv) is PaddedConv
        True
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Conv2d)):
        raise TypeError(f"Expected a subclass of nn.Conv2d, but got {cls!r}.")
    _FOLDABLE_CONVS.add(cls)
    return cls


@dataclass(frozen=True)
class Folded:
    """What :func:`fold_batchnorm` did.

    Attributes:
        module: the folded copy (a ``torch.fx.GraphModule``; parameters keep their names, folded BatchNorms are gone).
        folded: ``"conv <- bn"`` for each BatchNorm folded (``"conv <- ibn.BN"`` for an IBN layer's BN half).
        kept: ``(name, reason)`` for each BatchNorm left as it is.
    """

    module: nn.Module
    folded: tuple[str, ...]
    kept: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        """One line for logs and the protocol record."""
        total = len(self.folded) + len(self.kept)
        line = f"BatchNorm folded into the preceding convolution: {len(self.folded)} of {total}"
        if self.kept:
            line += "; kept: " + "; ".join(f"{name} ({why})" for name, why in self.kept[:3])
            if len(self.kept) > 3:
                line += f"; and {len(self.kept) - 3} more"
        return line


def _hooked(module: nn.Module) -> bool:
    """The module has forward hooks or forward pre-hooks (what folding would skip, or show other values)."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


class _Tracer(fx.Tracer):
    """Traces only through modules that hold a BatchNorm: everything else stays one opaque call, so models with
    untraceable code elsewhere (shape-dependent branches, custom autograd functions) still fold. A module with
    hooks stays one call too: traced through, its hooks would run once on the trace's proxies and never again."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Conv2d, IBN, nn.modules.batchnorm._BatchNorm)) or _hooked(m):
            return True
        if not any(isinstance(sub, nn.modules.batchnorm._BatchNorm) for sub in m.modules()):
            return True
        return super().is_leaf_module(m, qualname)


def fold_batchnorm(model: nn.Module) -> Folded:
    """Fold every eval-mode ``BatchNorm2d`` into the convolution that feeds it, in a copy of ``model``.

    A BatchNorm is folded when it is in eval mode with running statistics, called once, and its input is the output
    of a foldable convolution (``nn.Conv2d`` or a class passed to :func:`register_foldable_conv`) that is called once
    and read by nothing else. The folded weight and bias are computed in float64 and rounded once to the
    parameter's dtype. Everything else (InstanceNorm, an IBN layer's IN half, BatchNorms that do not qualify) is left
    as it is and listed in ``kept`` with the reason.

    Args:
        model: any ``nn.Module`` that ``torch.fx`` can trace through where its BatchNorms are; it is not modified.

    Returns:
        :class:`Folded`: the folded copy and what was (not) folded.

    Raises:
        ValueError: the model cannot be traced; the message names the FX error.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> result = fold_batchnorm(net)
        >>> result.folded, isinstance(net[1], nn.BatchNorm2d)
        (('0 <- 1',), True)
        >>> x = torch.rand(1, 3, 8, 8)
        >>> torch.allclose(result.module(x), net(x), atol=1e-6)
        True
    """
    if _hooked(model):
        raise ValueError(
            f"Cannot fold the BatchNorms of {type(model).__name__}: it has forward hooks or pre-hooks, which its "
            f"folded copy (a new module) would not call. Remove them, or run without the fast path (the exact default)."
        )
    root = copy.deepcopy(model)
    try:
        graph = _Tracer().trace(root)
    except Exception as err:  # FX raises TraceError, TypeError, NotImplementedError, ... depending on the code
        raise ValueError(
            f"Cannot fold the BatchNorms of {type(model).__name__}: torch.fx cannot trace it "
            f"({type(err).__name__}: {err}). Run without the fast path (the exact default)."
        ) from err
    folded_module = fx.GraphModule(root, graph, class_name=f"Folded{type(model).__name__}")
    modules = dict(folded_module.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    folded: list[str] = []
    folded_norms: set[str] = set()
    kept: dict[str, str] = {}
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        target = modules[node.target]
        if type(target) is nn.BatchNorm2d:
            bn, name = target, node.target
        elif isinstance(target, IBN):
            bn, name = target.BN, f"{node.target}.BN"
        elif isinstance(target, nn.modules.batchnorm._BatchNorm):  # a subclass (its forward may differ), 1d, 3d, ...
            kept[node.target] = _batch_statistics(target) or f"{type(target).__name__}, not a plain BatchNorm2d"
            continue
        else:
            continue
        why = _why_not(node, bn, modules, calls) or _hooks_in_the_way(node, target, bn, modules)
        if why:
            kept[name] = why
            continue
        conv_name = node.args[0].target
        conv = modules[conv_name]
        if bn is target:  # a whole BatchNorm: the convolution's output replaces the norm's
            _fold_into(conv, bn, slice(None))
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
        else:  # the IBN layer's BN half: its channels of the convolution; the IN half is untouched
            half = target.half
            channels = slice(half, None) if target.in_first else slice(0, half)
            _fold_into(conv, bn, channels)
            target.BN = nn.Identity()
        folded.append(f"{conv_name} <- {name}")
        folded_norms.add(name)
    # BatchNorms the trace never reached as a call of their own (other kinds, unused ones) are kept too.
    hooked = [name for name, module in model.named_modules() if name and _hooked(module)]
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and name not in kept and name not in folded_norms:
            holder = next((h for h in hooked if name == h or name.startswith(h + ".")), None)
            kept[name] = (f"inside {holder}, which has forward hooks or pre-hooks (run whole, as they expect)"
                          if holder is not None else
                          f"{type(module).__name__}, not called after a convolution in the traced graph")
    graph.lint()
    folded_module.recompile()
    folded_module.delete_all_unused_submodules()
    # Each module in training or eval mode as in the model: GraphModule's new containers would be in training mode,
    # and a later .eval() would not keep a module that the model's own train() override keeps training.
    modes = {name: m.training for name, m in model.named_modules()}
    for name, m in folded_module.named_modules():
        m.training = modes.get(name, model.training)
    return Folded(module=folded_module, folded=tuple(folded), kept=tuple(kept.items()))


def _batch_statistics(bn: nn.modules.batchnorm._BatchNorm) -> str:
    """Why ``bn`` normalizes with the batch's statistics (no fold can be exact), or ``""``."""
    if bn.training:
        return "in training mode (normalizes with batch statistics)"
    if bn.running_mean is None or bn.running_var is None:
        return "no running statistics (track_running_stats=False)"
    return ""


def _why_not(node: fx.Node, bn: nn.BatchNorm2d, modules: dict[str, nn.Module], calls: Counter) -> str:
    """Why this BatchNorm call cannot be folded, or ``""`` when it can."""
    statistics = _batch_statistics(bn)
    if statistics:
        return statistics
    if calls[node.target] != 1:
        return "called more than once"
    source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
    conv = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
    if conv is None or type(conv) not in _FOLDABLE_CONVS:
        what = type(conv).__name__ if conv is not None else "not a module call"
        return f"its input is not a plain convolution's output ({what})"
    if len(source.users) != 1:
        return "the convolution's output is also read elsewhere"
    if calls[source.target] != 1:
        return "the convolution is called more than once"
    return ""


def _hooks_in_the_way(node: fx.Node, target: nn.Module, bn: nn.BatchNorm2d, modules: dict[str, nn.Module]) -> str:
    """Why hooks forbid this fold (the convolution's would see normalized outputs, the norm's would not run, an IBN
    layer's pre-hooks would see its input half-normalized), or ``""``."""
    conv_name = node.args[0].target
    for what, module in ((f"the convolution {conv_name}", modules[conv_name]), ("the BatchNorm", bn),
                         ("the IBN layer", target if target is not bn else None)):
        if module is not None and _hooked(module):
            return f"{what} has forward hooks or pre-hooks (folding would change what they see, or skip them)"
    return ""


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice) -> None:
    """conv <- bn(conv) on ``channels`` of the convolution's output, computed in float64, rounded once."""
    weight = conv.weight.double()
    bias = conv.bias.double() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    weight[channels] *= scale.view(-1, *([1] * (weight.dim() - 1)))
    bias[channels] = (bias[channels] - mean) * scale + beta
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=conv.weight.requires_grad)


@dataclass(frozen=True)
class Compiled:
    """What :func:`compile_model` did.

    Attributes:
        module: the compiled module, or the module passed in when compiling failed.
        compiled: whether ``module`` is compiled.
        backend: the ``torch.compile`` backend tried (its name).
        seconds: wall time of the first call (compilation plus one forward of the example).
        max_abs_diff: largest absolute difference between compiled and eager outputs on the example (``None`` when
            not compiled).
        message: what happened, in one line (why it fell back, when it did).
    """

    module: nn.Module
    compiled: bool
    backend: str
    seconds: float
    max_abs_diff: float | None
    message: str


def _backend_name(backend: str | Callable[..., Any]) -> str:
    return backend if isinstance(backend, str) else getattr(backend, "__name__", repr(backend))


def compile_model(module: nn.Module, example: torch.Tensor, *, backend: str | Callable[..., Any] = "inductor") -> Compiled:
    """``torch.compile(module)``, compiled now on ``example``, or the module as it is with a warning saying why not.

    Call it in the context the module will run in (``torch.inference_mode()``, autocast): compiled code is
    specialised to that context and to the example's shape (``dynamic=False``: another batch size, such as a
    shorter last batch, compiles once more).

    Args:
        module: the module to compile (eval mode).
        example: one input batch, on the module's device.
        backend: ``torch.compile`` backend, a name or a callable (``"inductor"``; on CPU it needs a C++ compiler).

    Returns:
        :class:`Compiled`. When compiling fails, ``module`` is returned uncompiled, ``compiled`` is False, a
        ``RuntimeWarning`` is issued and ``message`` says why.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> result = compile_model(net, torch.rand(2, 3, 8, 8), backend="eager")
        >>> result.compiled, result.max_abs_diff
        (True, 0.0)
    """
    name = type(module).__name__
    label = _backend_name(backend)
    start = time.perf_counter()
    try:
        compiled = torch.compile(module, backend=backend, dynamic=False)
        out = compiled(example)
    except Exception as err:  # inductor reports a missing compiler, codegen and lowering failures in many types
        seconds = time.perf_counter() - start
        torch.compiler.reset()  # drop the half-built caches, so the eager module runs clean
        cause: BaseException = err
        # dynamo wraps the backend's own error (BackendCompilerFailed.inner_exception, InductorError's cause)
        while (inner := getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
            cause = inner
        reason = (str(cause).strip().splitlines() or [""])[0]
        message = (
            f"torch.compile (backend {label!r}) could not compile {name}: {type(cause).__name__}: {reason[:300]}. "
            f"Running it uncompiled (eager). On CPU, inductor needs a working "
            f"C++ compiler (g++ or clang++ on PATH, or CXX)."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return Compiled(module=module, compiled=False, backend=label, seconds=seconds, max_abs_diff=None,
                        message=message)
    seconds = time.perf_counter() - start
    reference = module(example)
    diff = float((out.float() - reference.float()).abs().max()) if out.numel() else 0.0
    message = (f"compiled {name} with torch.compile (backend {label!r}, {tuple(example.shape)}) in {seconds:.1f} s; "
               f"max |compiled - eager| on the example: {diff:.3g}")
    return Compiled(module=compiled, compiled=True, backend=label, seconds=seconds, max_abs_diff=diff,
                    message=message)


def batch_dependent(module: nn.Module) -> list[str]:
    """The submodules of ``module`` whose output for an image depends on the other images of its batch, each with
    why: a BatchNorm that normalizes with batch statistics (in training mode, or built with
    ``track_running_stats=False``), and any module left in training mode (``module.eval()`` did not reach it: its
    own ``train()`` keeps it there, for test-time adaptation say). Padding such a batch, or splitting it, changes
    its predictions.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
        >>> batch_dependent(net)
        ['1: BatchNorm2d, no running statistics (track_running_stats=False)']
    """
    found = []
    for name, m in module.named_modules():
        why = _batch_statistics(m) if isinstance(m, nn.modules.batchnorm._BatchNorm) else ""
        if why or m.training:
            found.append(f"{name or type(module).__name__}: {type(m).__name__}, {why or 'in training mode'}")
    return found


class FixedBatch(nn.Module):
    """Runs ``module`` on batches of exactly ``size`` images: a shorter batch is padded with zero images (their
    outputs dropped), a longer one split. Compiled code is specialised to one shape, so the last, shorter batch of
    a run (or one with undecodable images left out) neither compiles again nor runs uncompiled. Only for a
    network where each image's output does not depend on its batch-mates, padding included
    (:func:`batch_dependent` finds none): :func:`fast_path` never pads another.

    Example:
        >>> net = FixedBatch(nn.Flatten(), 4)
        >>> net(torch.ones(3, 2, 1, 1)).shape, net(torch.ones(5, 2, 1, 1)).shape
        (torch.Size([3, 2]), torch.Size([5, 2]))
    """

    def __init__(self, module: nn.Module, size: int) -> None:
        super().__init__()
        self.module, self.size = module, size
        self.training = module.training  # a wrapper only: in eval mode when what it runs is

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n > self.size:
            return torch.cat([self(part) for part in x.split(self.size)])
        if n < self.size:
            padded = torch.cat([x, x.new_zeros((self.size - n, *x.shape[1:]))])
            x = padded.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else padded
        return self.module(x)[:n]


@dataclass(frozen=True)
class FastPath:
    """What :func:`fast_path` built: the module a run classifies with, and what was done to get it.

    Attributes:
        module: the folded network, compiled behind :class:`FixedBatch` when that worked, else eager.
        folded: the :class:`Folded` record.
        compiled: the :class:`Compiled` record (``compiled.compiled`` False: the folded network runs eager).
    """

    module: nn.Module
    folded: Folded
    compiled: Compiled

    def without_compile(self, reason: str) -> FastPath:
        """The same fold, run eager (no padding) because of ``reason``: what every rank of a run runs when one of
        them could not compile, so that all batches of a result round alike."""
        eager = Compiled(module=self.folded.module, compiled=False, backend=self.compiled.backend,
                         seconds=self.compiled.seconds, max_abs_diff=None, message=reason)
        return FastPath(self.folded.module, self.folded, eager)

    def fingerprint(self) -> dict[str, Any]:
        """The part of the protocol fingerprint: what changes float rounding (not the model's own counts)."""
        return {"fold_batchnorm": True, "compiled": self.compiled.compiled}

    def record(self) -> dict[str, Any]:
        """What a result's protocol records of the fast path: BatchNorms folded and kept (with the reason), whether
        it is compiled, and why not when it is not."""
        return {
            **self.fingerprint(),
            "batchnorm_folded": len(self.folded.folded),
            "batchnorm_kept": [{"name": name, "reason": why} for name, why in self.folded.kept],
            "fold": self.folded.describe(),
            "compile_backend": self.compiled.backend,
            "compile_batch": self.module.size if isinstance(self.module, FixedBatch) else None,
            "not_compiled_because": None if self.compiled.compiled else self.compiled.message,
            "max_abs_diff_on_example": self.compiled.max_abs_diff,
        }


def fast_path(net: nn.Module, example: torch.Tensor, *, backend: str | Callable[..., Any] = "inductor") -> FastPath:
    """:func:`fold_batchnorm` then :func:`compile_model` on ``example``'s shape, as a run uses them.

    Call it in the context the run classifies in (``torch.inference_mode()`` and its precision's autocast): compiled
    code is specialised to that context. When compiling fails the folded network runs eager, with the warning
    :func:`compile_model` issues.

    Args:
        net: the network as the run calls it (eval mode, on the device, channels_last), not modified.
        example: one input batch of the run's batch size, on the device, channels_last.
        backend: ``torch.compile`` backend (``"inductor"``).

    Returns:
        :class:`FastPath`; eager, with a ``RuntimeWarning`` saying why, for a network that :func:`batch_dependent`
        finds batch-dependent.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten()).eval()
        >>> with torch.inference_mode():
        ...     path = fast_path(net, torch.rand(2, 3, 4, 4), backend="eager")
        ...     out = path.module(torch.rand(1, 3, 4, 4))
        >>> path.fingerprint(), path.record()["batchnorm_folded"], out.shape
        ({'fold_batchnorm': True, 'compiled': True}, 1, torch.Size([1, 16]))
    """
    folded = fold_batchnorm(net)
    module = folded.module.to(memory_format=torch.channels_last)  # train/eval flags as in net (fold_batchnorm)
    dependent = batch_dependent(net)
    if dependent:  # compiled code is one batch shape, and padding the last batch would change its predictions
        message = ("not compiled: an image's output depends on the other images of its batch "
                   f"({listing(dependent, 3)}), so compiled code (one batch size, shorter batches padded with "
                   "zeros) would change predictions; the folded network runs eager, on the batches the exact path "
                   "gives it")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return FastPath(module, folded, Compiled(module=module, compiled=False, backend=_backend_name(backend),
                                                 seconds=0.0, max_abs_diff=None, message=message))
    compiled = compile_model(module, example, backend=backend)
    if not compiled.compiled:  # eager takes any batch size: nothing to pad
        return FastPath(module, folded, compiled)
    return FastPath(FixedBatch(compiled.module, example.shape[0]), folded, compiled)
