"""The attribute that marks a function as a stack fix's replacement, so that applying a fix twice is a no-op."""
from typing import Any, Callable

PATCH_FLAG = '_orl_stack_fix'


def is_patched(fn: Any) -> bool:
    return bool(getattr(fn, PATCH_FLAG, False))


def mark_patched(fn: Callable) -> Callable:
    setattr(fn, PATCH_FLAG, True)
    return fn
