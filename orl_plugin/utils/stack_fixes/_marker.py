"""The attribute that marks a function as a stack fix's replacement, so that applying a fix twice is a no-op."""
from typing import Any, Callable

PATCH_FLAG = '_orl_stack_fix'


def is_patched(fn: Any) -> bool:
    """Whether ``fn`` is already a stack fix's replacement."""
    return bool(getattr(fn, PATCH_FLAG, False))


def mark_patched(fn: Callable) -> Callable:
    """Mark ``fn`` as a stack fix's replacement; returns it."""
    setattr(fn, PATCH_FLAG, True)
    return fn
