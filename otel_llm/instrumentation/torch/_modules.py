"""Opt-in spans around chosen ``nn.Module`` forwards.

Targets: module classes (every instance, subclasses that do not override
``forward`` included), module instances (that one only), or names -- a dotted
path ``package.module.Class`` (wrapped when that module is imported) or a bare
class name of an already-imported ``nn.Module`` subclass.

Each patch remembers exactly what it replaced, so ``restore()`` puts back the
original attribute (or removes ours when the attribute was inherited).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_error

_MISSING = object()


def _make_forward(original: Any, tracer: trace.Tracer, label: str, bound_self: Any = None):
    name = f"forward {label}"
    attrs = {sc.OTEL_LLM_TORCH_MODULE: label}

    def forward(*args: Any, **kwargs: Any) -> Any:
        call_args = args if bound_self is None else (bound_self, *args)
        if not is_instrumentation_enabled():
            return original(*call_args, **kwargs)
        try:
            span_cm = tracer.start_as_current_span(
                name, kind=SpanKind.INTERNAL, attributes=attrs, record_exception=False, set_status_on_exception=False
            )
            span = span_cm.__enter__()
        except Exception as exc:
            report_error("torch.module", exc)
            return original(*call_args, **kwargs)
        try:
            return original(*call_args, **kwargs)
        except BaseException as exc:
            span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span_cm.__exit__(None, None, None)

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward._otel_llm_forward = True  # type: ignore[attr-defined]
    return forward


class ModulePatcher:
    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._patches: list[tuple[Any, Any]] = []  # (owner, previous value or _MISSING)
        self.pending: list[str] = []  # dotted paths waiting for their module

    def add(self, target: Any) -> None:
        import torch

        if isinstance(target, str):
            self._add_name(target)
        elif isinstance(target, type) and issubclass(target, torch.nn.Module):
            self._patch_class(target)
        elif isinstance(target, torch.nn.Module):
            self._patch_instance(target)
        else:
            raise ValueError(
                f"torch modules: {target!r} is not an nn.Module class, instance, or class name / dotted path"
            )

    def _add_name(self, name: str) -> None:
        if "." in name:
            module_name, _, cls_name = name.rpartition(".")
            if module_name in sys.modules:
                self.add(self._resolve(module_name, cls_name, name))
                return
            import wrapt

            self.pending.append(name)

            def on_import(module: Any, cls_name: str = cls_name, name: str = name) -> None:
                if name not in self.pending:
                    return  # restored before the import
                self.pending.remove(name)
                try:
                    self.add(self._resolve(module.__name__, cls_name, name))
                except Exception as exc:
                    report_error("torch.module", exc)

            wrapt.register_post_import_hook(on_import, module_name)
            return
        found = _find_subclass(name)
        if found is None:
            raise ValueError(
                f"torch modules: no imported nn.Module subclass is named {name!r}; "
                "use a dotted path such as transformers.models.llama.modeling_llama.LlamaDecoderLayer"
            )
        self._patch_class(found)

    @staticmethod
    def _resolve(module_name: str, cls_name: str, full: str) -> Any:
        module = importlib.import_module(module_name)
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise ValueError(f"torch modules: {full!r} not found")
        return cls

    def _patch_class(self, cls: type) -> None:
        current = cls.__dict__.get("forward", _MISSING)
        if getattr(current, "_otel_llm_forward", False):
            return  # already ours
        original = cls.forward
        cls.forward = _make_forward(original, self.tracer, cls.__qualname__)
        self._patches.append((cls, current))

    def _patch_instance(self, module: Any) -> None:
        current = module.__dict__.get("forward", _MISSING)
        if getattr(current, "_otel_llm_forward", False):
            return
        original = type(module).forward if current is _MISSING else current
        bound = module if current is _MISSING else None
        object.__setattr__(module, "forward", _make_forward(original, self.tracer, type(module).__qualname__, bound))
        self._patches.append((module, current))

    def restore(self) -> None:
        self.pending.clear()
        while self._patches:
            owner, previous = self._patches.pop()
            if isinstance(owner, type):
                if previous is _MISSING:
                    delattr(owner, "forward")
                else:
                    owner.forward = previous
            elif previous is _MISSING:
                owner.__dict__.pop("forward", None)
            else:
                object.__setattr__(owner, "forward", previous)


def _find_subclass(name: str) -> type | None:
    import torch

    stack = [torch.nn.Module]
    seen = set()
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            if sub.__name__ == name:
                return sub
            stack.append(sub)
    return None
