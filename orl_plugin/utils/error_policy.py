"""The error policy of every command-line tool: a known error is one line and exit status 2, a bug a traceback.

``error: MESSAGE`` goes on one line of stderr, every file it names as a full path, and the tool exits with
status 2 (argparse's status for a bad command line); ``--debug`` anywhere on the command line shows the
traceback too. At the end of a tool::

    if __name__ == '__main__':
        run_cli(main)   # main(argv) parses argv (the command line without --debug)
"""
from __future__ import annotations

import json
import os
import os.path as osp
import pickle
import re
import sys
from typing import Callable, List, Optional, Sequence

__all__ = [
    'DEBUG_FLAG', 'EXIT_KNOWN_ERROR', 'InputError', 'check_out_file', 'out_help', 'run_cli', 'is_known_error',
    'error_line'
]

DEBUG_FLAG = '--debug'
EXIT_KNOWN_ERROR = 2
_PLUGIN_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))  # orl_plugin/
# torch's DataLoader re-raises a worker's exception with the worker's traceback as the message.
_WORKER_TRACEBACK = 'Original Traceback (most recent call last):'
_FRAME_FILE = re.compile(r'^\s*File "([^"]+)", line \d+')


class InputError(ValueError):
    """Bad input found by a tool itself (an option out of range, a file of the wrong kind)."""


def out_help(what: str) -> str:
    """The ``--help`` of ``--out`` in every benchmark and analysis tool, with ``what`` the file holds.

    ``--out FILE`` is the one file a tool's results go to; what else it keeps (generated data, work folders)
    goes under its ``--work-dir``. The path is checked with :func:`check_out_file` before any work.
    """
    return f'the results file ({what}); checked before any work: a folder is refused, missing folders are made'


def check_out_file(path: str, option: str = '--out') -> str:
    """The absolute path of ``path`` when a result file can be written there, else :class:`InputError`.

    Called before any measuring, so that a bad path costs one line, not minutes: ``path`` must not be a folder
    (an existing one, or a name ending in a separator), and its nearest existing parent must be a writable
    folder (the missing ones are created when the file is written).
    """
    if not path:
        raise InputError(f'{option}: give a file path')
    full = osp.abspath(path)
    if osp.isdir(full) or path.endswith((os.sep, '/')):
        raise InputError(f'{option} {full}: is a folder; give the file to write, e.g. {osp.join(full, "results.json")}')
    parent = osp.dirname(full)
    while not osp.exists(parent):
        parent = osp.dirname(parent)
    if not osp.isdir(parent):
        raise InputError(f'{option} {full}: {parent} is a file, not a folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f'{option} {full}: the folder {parent} is not writable')
    return full


def _raise_site(exc: BaseException) -> Optional[str]:
    """The file of the innermost Python frame the exception came from (in a worker, too)."""
    text = str(exc)
    if _WORKER_TRACEBACK in text:
        files = [m.group(1) for m in map(_FRAME_FILE.match, text.splitlines()) if m]
        return files[-1] if files else None
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename


def _in_plugin(path: Optional[str]) -> bool:
    return bool(path) and osp.abspath(path).startswith(_PLUGIN_DIR + os.sep)


def is_known_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input (one line) rather than a bug (traceback).

    A known error is one the user can fix without reading code: a missing or unreadable file (``OSError``), a
    file that is not valid JSON, a checkpoint ``torch.load(weights_only=True)`` refuses, a config with a syntax
    error, an error class the plugin defines for bad input (``StoreFormatError``, ``CheckpointFormatError``,
    ``InputError``, ...) and a ``ValueError``/``RuntimeError`` raised by the plugin's own code (its input
    checks). Anything else is a bug.
    """
    if isinstance(exc, (OSError, json.JSONDecodeError, pickle.UnpicklingError, SyntaxError)):
        return True
    if any(cls.__module__.split('.')[0] == 'orl_plugin' for cls in type(exc).__mro__):
        return True  # the plugin's own error classes exist for bad input
    return type(exc) in (ValueError, RuntimeError) and _in_plugin(_raise_site(exc))


def _message(exc: BaseException, argv: Sequence[str]) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        # mmengine parses the top config with ast.parse, whose errors name no file
        where = exc.filename if exc.filename and not exc.filename.startswith('<') else None
        configs = [a for a in _path_args(argv) if a.endswith('.py')]
        where = where or (configs[0] if len(configs) == 1 else '<config>')
        return f'{osp.abspath(where) if where[0] != "<" else where}: syntax error in line ' \
               f'{exc.lineno}: {exc.msg}'
    if isinstance(exc, OSError) and exc.filename is not None:
        names = [osp.abspath(os.fsdecode(f)) for f in (exc.filename, exc.filename2) if f is not None]
        return f'{" -> ".join(names)}: {exc.strerror or exc}'
    text = str(exc)
    if _WORKER_TRACEBACK in text:  # the worker's own last line: "ValueError: message"
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(': ', 1)[1] if re.match(r'^[\w.]+: ', last) else last
    if isinstance(exc, pickle.UnpicklingError):
        # torch's message is a page of advice; the line naming what it refused is the news
        refused = [
            line.strip() for line in text.splitlines() if 'Unsupported global' in line or 'Unsupported operand' in line
        ]
        text = 'cannot be loaded with weights_only=True' + (f': {refused[0]}' if refused else '')
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) adds quotes
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ' '.join(lines) if len(lines) <= 3 else lines[0]


def _path_args(argv: Sequence[str]) -> List[str]:
    """Command-line words (or ``key=value`` values) that name files or folders."""
    paths = []
    for word in argv:
        if word.startswith('-'):
            continue
        word = word.split('=', 1)[1] if '=' in word and not osp.exists(word) else word
        looks_like_path = os.sep in word or re.search(r'\.[A-Za-z]\w*$', word)
        if word and (osp.exists(word) or looks_like_path and osp.isdir(osp.dirname(word) or '.')):
            paths.append(word)
    return paths


def _with_full_paths(text: str, argv: Sequence[str]) -> str:
    """``text`` with the files it names written as full paths.

    A relative path from the command line is made absolute wherever it stands as a word; a
    leading ``NAME:`` that is the base name of one file on the command line (messages that name
    a file by its base name) or a relative path that exists becomes that file's full path.
    """
    paths = _path_args(argv)
    for path in sorted(set(paths), key=len, reverse=True):
        full = osp.abspath(path)
        if full != path and full not in text:
            text = re.sub(rf'(?<![\w./-]){re.escape(path)}(?![\w/-])', full, text)
    lead = re.match(r'^([^\s:]+):(\s)', text)
    if lead and not osp.isabs(lead.group(1)):
        name = lead.group(1)
        same_name = {osp.abspath(p) for p in paths if osp.basename(osp.normpath(p)) == name}
        if osp.exists(name):
            full = osp.abspath(name)
        elif len(same_name) == 1:
            full = same_name.pop()
        else:
            return text
        text = full + text[len(name):]
    return text


def error_line(exc: BaseException, argv: Sequence[str] = ()) -> str:
    """The one line printed for a known error (without the ``error:`` prefix)."""
    return _with_full_paths(_message(exc, argv), argv)


def run_cli(main: Callable[[List[str]], Optional[int]], argv: Optional[Sequence[str]] = None) -> None:
    """Run a tool's ``main(argv)`` under the policy of this module.

    Args:
        main: the tool's entry point; it gets the command line without ``--debug`` and returns
            ``None``/``0`` on success or an exit status.
        argv: the command line (default: ``sys.argv[1:]``).

    Exits with ``main``'s status when it is not 0, with 2 after a known error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        status = main(argv)
    except Exception as exc:  # noqa: BLE001 (known errors become one line; the rest re-raise)
        if debug or not is_known_error(exc):
            raise
        sys.stdout.flush()
        print(f'error: {error_line(exc, argv)} ({DEBUG_FLAG} shows the traceback)', file=sys.stderr, flush=True)
        sys.exit(EXIT_KNOWN_ERROR)
    if status:
        sys.exit(status)
