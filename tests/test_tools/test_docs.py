"""The docs cannot drift from the tree.

Read: ``README.md``, ``docs/**/*.md``, ``configs/**/README.md`` and ``projects/*/README.md``. Checked in each:

- every relative link ``[text](target)`` names a file or folder that exists, and a ``#fragment`` names a heading of
  the target page (GitHub's anchors);
- every repository path, in inline code, in a code block or in a command, exists: a token that starts with one of the
  repository's folders (``configs/``, ``tools/``, ``orl_plugin/``, ``projects/``, ``docs/``, ``tests/``; braces
  ``{a,b}`` and globs ``*`` expanded, ``file.py::test_name`` naming a test function of that file) or with ``_base_/``
  (a config fragment under ``configs/``), and every module run as ``python -m orl_plugin.x`` / ``projects.x``;
- every file name ending in ``.py`` written without a folder (a config name such as
  ``byol_resnet50_8xb64-coslr-800e_coco.py``, a fragment, a tool) exists somewhere under ``configs/``, ``projects/``,
  ``tools/``, ``orl_plugin/`` or ``tests/``, when it has a ``_`` or ``-`` in its name (``train.py`` of another package
  is not this repository's to check);
- every command of a ``bash``/``shell`` block whose first word is a tool of this repository (``python tools/x.py``,
  ``python projects/*/tools/x.py``, ``tools/x.sh``, ``orl-pipeline``, ``mim ... orl-plugin``, ``make``) names
  existing files and options the tool has: each tool is run once, ``--help`` for a Python tool (the options the docs
  give it must be in its help), a dry run for the rest: a shell launcher that starts Python through ``$PYTHON`` with
  ``PYTHON`` and ``srun`` replaced by a recorder (it must exit 0 and start a Python file of the repository; any other
  script, the installer among them, is never run: ``bash -n`` checks its syntax), ``orl-pipeline synthetic
  --dry-run``, ``mim run orl-plugin pipeline synthetic --dry-run``, ``make -n TARGET``. Only files in a ``tools/``
  folder are tools; a config or module named in a command is checked to exist, never run.

Placeholders pass because only the tokens above are checked: ``CONFIG``, ``CHECKPOINT``, ``$S3``, ``/path/to/photos``,
``work_dirs/...``, ``data/coco/...`` and any other path that does not start with one of the repository's folders are
data or the reader's own, never looked up. :data:`PENDING` lists the pages another change writes; a link to one passes
only while that page is missing, and the test says so.
"""
import fnmatch
import functools
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional, Tuple

import pytest
from helpers import ROOT

REPO_DIRS = ('configs', 'tools', 'orl_plugin', 'projects', 'docs', 'tests')
NAME_DIRS = ('configs', 'projects', 'tools', 'orl_plugin', 'tests')
#: Pages another change writes. A link to one passes only while it is missing.
PENDING: set = set()
SHELL_LANGS = ('bash', 'shell', 'sh', 'console')
TIMEOUT = 120


class Problem(NamedTuple):
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f'{self.file}:{self.line}: {self.what}'


class Command(NamedTuple):
    file: str
    line: int
    env: Dict[str, str]
    argv: List[str]
    inline: bool = False  # written in inline code (its options are checked; a block's command is the one run)


# --------------------------------------------------------------------------------------------------------------------
# reading markdown
# --------------------------------------------------------------------------------------------------------------------
def doc_files(root: str = ROOT) -> List[str]:
    """The documentation pages, relative to ``root``."""
    found = ['README.md'] if osp.isfile(osp.join(root, 'README.md')) else []
    found += glob.glob('docs/**/*.md', root_dir=root, recursive=True)
    found += glob.glob('configs/**/README.md', root_dir=root, recursive=True)
    found += glob.glob('projects/*/README.md', root_dir=root)
    return sorted(set(found))


FENCE = re.compile(r'^(\s*)(```+|~~~+)\s*([\w+-]*)')


def split_markdown(text: str) -> Tuple[List[Tuple[int, str]], List[Tuple[int, str, str]]]:
    """``(prose, blocks)``: prose lines as ``(line number, text)`` with fenced blocks blanked, and the fenced blocks
    as ``(first line number, language, text)``."""
    prose, blocks = [], []
    fence, lang, start, body = None, '', 0, []
    for n, line in enumerate(text.split('\n'), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence, lang, start, body = m.group(2), m.group(3).lower(), n + 1, []
            prose.append((n, ''))
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append((start, lang, '\n'.join(body)))
            fence = None
            prose.append((n, ''))
        elif fence is not None:
            body.append(line)
            prose.append((n, ''))
        else:
            prose.append((n, line))
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text.replace('`', ''))
    return text.replace(' ', '-')


@functools.lru_cache(maxsize=None)
def anchors(path: str) -> frozenset:
    """Every heading anchor of a markdown file (repeated headings get ``-1``, ``-2``... as on GitHub)."""
    prose, _ = split_markdown(open(path, encoding='utf-8').read())
    seen: Dict[str, int] = {}
    found = set()
    for _, line in prose:
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        base = slug(m.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f'{base}-{count}')
    return frozenset(found)


# --------------------------------------------------------------------------------------------------------------------
# names in the tree
# --------------------------------------------------------------------------------------------------------------------
def expand(pattern: str) -> List[str]:
    """Brace expansion: ``a{b,c}d`` -> ``abd``, ``acd`` (nested braces are not used in the docs)."""
    m = re.search(r'\{([^{}]*)\}', pattern)
    if not m:
        return [pattern]
    return [p for alt in m.group(1).split(',') for p in expand(pattern[:m.start()] + alt + pattern[m.end():])]


def exists(root: str, rel: str) -> bool:
    """Whether every brace alternative of ``rel`` (a glob) matches something under ``root``."""
    for alt in expand(rel):
        if any(c in alt for c in '*?['):
            if not glob.glob(alt, root_dir=root):
                return False
        elif not osp.exists(osp.join(root, alt)):
            return False
    return True


@functools.lru_cache(maxsize=None)
def basenames(root: str) -> frozenset:
    names = set()
    for top in NAME_DIRS:
        for dirpath, _, files in os.walk(osp.join(root, top)):
            names.update(files)
    return frozenset(names)


def name_exists(root: str, name: str) -> bool:
    names = basenames(root)
    return all(
        any(fnmatch.fnmatchcase(n, alt) for n in names) if any(c in alt for c in '*?[') else alt in names
        for alt in expand(name))


PATH_TOKEN = re.compile(r'(?<![\w./:<>${},*-])(?:\./)?((?:%s)/[\w./{},*?+-]*(?:::[A-Za-z_]\w*)?)' % '|'.join(REPO_DIRS))
BASE_TOKEN = re.compile(r'(?<![\w:<>${},*-])(?:\.\./|\./)*(_base_/[\w./{},*-]*)')
MODULE_TOKEN = re.compile(r'python3?\s+-m\s+((?:orl_plugin|projects)(?:\.\w+)+)')
NAME_TOKEN = re.compile(r'(?<![\w./:<>${},*-])([\w{},*-]*[_-][\w{},*-]*\.py)(?![\w/])')


def placeholder(token: str) -> bool:
    """A name pattern, not a name: ``{algorithm}_{backbone}...`` (a brace without alternatives) or capitals."""
    return bool(re.search(r'\{[^{},]*\}', token)) or re.sub(r'\.py$', '', token).isupper()


def path_problems(root: str, text: str, here: str = '') -> List[str]:
    """What in ``text`` names a repository path, fragment or ``.py`` file that does not exist. A path is looked up
    from the repository root, and from ``here`` (the page's folder: a project's README names its own files)."""
    found = []
    for m in PATH_TOKEN.finditer(text):
        token = m.group(1).rstrip('.,;:)')
        path, _, test = token.partition('::')
        if path.endswith('...') or not path or placeholder(path):
            continue
        base = root if exists(root, path) else None
        if base is None and here and exists(osp.join(root, here), path):
            base = osp.join(root, here)
        if base is None:
            found.append(f'no such path: {token}')
        elif test and not re.search(rf'^\s*def {test}\b', open(osp.join(base, path)).read(), flags=re.M):
            found.append(f'no test {test} in {path}')
    for m in BASE_TOKEN.finditer(text):
        token = m.group(1).rstrip('.,;:)')
        if not exists(osp.join(root, 'configs'), token):
            found.append(f'no such config fragment: configs/{token}')
    for m in MODULE_TOKEN.finditer(text):
        module = osp.join(root, *m.group(1).split('.'))
        if not (osp.isfile(module + '.py') or osp.isfile(osp.join(module, '__init__.py'))):
            found.append(f'no such module: {m.group(1)}')
    for m in NAME_TOKEN.finditer(text):
        if not placeholder(m.group(1)) and not name_exists(root, m.group(1)):
            found.append(f'no file of that name in the repository: {m.group(1)}')
    return found


# --------------------------------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------------------------------
def commands(text: str, first_line: int) -> List[Tuple[int, str]]:
    """Logical command lines of a shell block (continuations joined, comments and blank lines left out)."""
    out, buf, start = [], '', None
    for n, line in enumerate(text.split('\n'), first_line):
        if line.startswith('$ '):
            line = line[2:]
        if start is None:
            start = n
        if line.rstrip().endswith('\\'):
            buf += line.rstrip()[:-1] + ' '
            continue
        buf += line
        if buf.strip() and not buf.strip().startswith('#'):
            out.append((start, buf))
        buf, start = '', None
    return out


def parse_command(line: str) -> Tuple[Dict[str, str], List[str]]:
    """``(env, argv)`` of one command line: leading ``NAME=value`` assignments, then the words (quotes removed,
    ``# comments`` dropped). Only the first command of ``a && b`` counts."""
    words = shlex.split(line, comments=True)
    for i, w in enumerate(words):
        if w in ('&&', '||', '|', ';'):
            words = words[:i]
            break
    env = {}
    while words and re.match(r'^[A-Za-z_]\w*=', words[0]):
        k, _, v = words.pop(0).partition('=')
        env[k] = v
    return env, words


def tool_of(argv: List[str]) -> Optional[str]:
    """The repository tool a command runs: a script path, ``orl-pipeline``, ``mim`` or ``make``; None otherwise."""
    if not argv:
        return None
    first = argv[0]
    if osp.basename(first).startswith('python'):
        script = next((a for a in argv[1:] if not a.startswith('-')), None)
        if '-c' in argv[1:2] or '-m' in argv[1:2] or script is None:
            return None
        return script if script.split('/')[0] in REPO_DIRS else None
    if first in ('bash', 'sh'):
        return tool_of(argv[1:])
    if any(c in first for c in '*?{}[]'):
        return None
    if first.endswith(('.sh', '.py')) and first.lstrip('./').split('/')[0] in REPO_DIRS:
        return first[2:] if first.startswith('./') else first
    if first == 'orl-pipeline':
        return 'orl-pipeline'
    if first == 'mim' and 'orl-plugin' in argv:
        return 'mim'
    if first == 'make':
        return 'make'
    return None


def is_tool_file(tool: str) -> bool:
    """Only a file in a ``tools/`` folder is a tool (a config or a module named in a command is not run)."""
    return '/tools/' in f'/{tool}'


def dry_runnable(tool: str) -> bool:
    """Whether a shell tool may be dry-run: a launcher that starts Python through ``$PYTHON`` (so the recorder
    stands in for every process it would start), never the installer, which builds the environment itself."""
    if tool.startswith('tools/install/'):
        return False
    text = open(osp.join(ROOT, tool)).read()
    return bool(re.search(r'\$\{?PYTHON\b', text)) and not re.search(r'\bpip3?\b', text)


def options(argv: List[str]) -> List[str]:
    return sorted({a.split('=')[0] for a in argv if a.startswith('--')})


# --------------------------------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------------------------------
def check_file(path: str, rel: str, root: str = ROOT) -> Tuple[List[Problem], List[Command], List[str]]:
    """``(problems, commands of repository tools, pending links)`` of the page at ``path``, read as if it were
    ``rel`` in ``root``."""
    text = open(path, encoding='utf-8').read()
    prose, blocks = split_markdown(text)
    here = osp.dirname(rel)
    problems, cmds, pending = [], [], []
    prose_text = '\n'.join(line for _, line in prose)
    # links (not images of other hosts, not mail)
    for n, line in prose:
        for m in re.finditer(r'\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)', line):
            target = m.group(1)
            if re.match(r'^[a-z][a-z0-9+.-]*:', target):
                continue
            file_part, _, frag = target.partition('#')
            if not file_part:
                if frag not in anchors(path):
                    problems.append(Problem(rel, n, f'no heading #{frag} on this page'))
                continue
            dest = osp.normpath(osp.join(here, file_part))
            if dest.startswith('..'):
                problems.append(Problem(rel, n, f'link leaves the repository: {target}'))
                continue
            if not osp.exists(osp.join(root, dest)):
                if dest in PENDING:
                    pending.append(dest)
                else:
                    problems.append(Problem(rel, n, f'dead link: {target}'))
                continue
            if frag and dest.endswith('.md') and frag not in anchors(osp.join(root, dest)):
                problems.append(Problem(rel, n, f'no heading #{frag} in {dest}'))
    # inline code (may run over a line break) and code blocks
    line_of = {}
    offset = 0
    for n, line in prose:
        line_of[offset] = n
        offset += len(line) + 1
    starts = sorted(line_of)
    for m in re.finditer(r'`([^`]+)`', prose_text):
        n = line_of[max(s for s in starts if s <= m.start())]
        problems += [Problem(rel, n, p) for p in path_problems(root, m.group(1), here)]
        try:
            env, argv = parse_command(m.group(1).replace('\n', ' '))
        except ValueError:
            continue
        tool = tool_of(argv)
        if tool == 'orl-pipeline':
            cmds.append(Command(rel, n, env, argv, inline=True))
        elif tool is not None and is_tool_file(tool):
            if not osp.isfile(osp.join(root, tool)) and osp.isfile(osp.join(root, here, tool)):
                # a project's README names its own tools from its folder
                argv = [osp.join(here, a) if a == tool else a for a in argv]
                tool = osp.join(here, tool)
            if osp.isfile(osp.join(root, tool)):
                cmds.append(Command(rel, n, env, argv, inline=True))
            else:
                problems.append(Problem(rel, n, f'no such tool: {tool}'))
    for start, lang, body in blocks:
        for i, line in enumerate(body.split('\n')):
            problems += [Problem(rel, start + i, p) for p in path_problems(root, line, here)]
        if lang not in SHELL_LANGS:
            continue
        for n, line in commands(body, start):
            try:
                env, argv = parse_command(line)
            except ValueError as e:
                problems.append(Problem(rel, n, f'cannot parse the command ({e}): {line}'))
                continue
            tool = tool_of(argv)
            if tool is None:
                continue
            if tool not in ('orl-pipeline', 'mim', 'make') and not osp.isfile(osp.join(root, tool)):
                problems.append(Problem(rel, n, f'no such tool: {tool}'))
                continue
            if tool in ('orl-pipeline', 'mim', 'make') or is_tool_file(tool):
                cmds.append(Command(rel, n, env, argv))
    return problems, cmds, pending


def check_tree(root: str = ROOT) -> Tuple[List[Problem], List[Command], List[str]]:
    problems, cmds, pending = [], [], []
    for rel in doc_files(root):
        p, c, pend = check_file(osp.join(root, rel), rel, root)
        problems += p
        cmds += c
        pending += pend
    return problems, cmds, sorted(set(pending))


# --------------------------------------------------------------------------------------------------------------------
# running the tools
# --------------------------------------------------------------------------------------------------------------------
def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update(extra or {})
    return env


def run(argv: List[str], cwd: str = ROOT, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def make_recorder(folder: str) -> Tuple[Dict[str, str], str]:
    """A ``python`` and an ``srun`` that record their arguments and succeed: the launchers' dry run."""
    log = osp.join(folder, 'calls.txt')
    bin_dir = osp.join(folder, 'bin')
    os.makedirs(bin_dir, exist_ok=True)
    for name in ('python', 'srun'):
        stub = osp.join(bin_dir, name)
        with open(stub, 'w') as f:
            f.write(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 0\n')
        os.chmod(stub, 0o755)
    env = tool_env({'PYTHON': osp.join(bin_dir, 'python'), 'OUT': osp.join(folder, 'out')})
    env['PATH'] = bin_dir + os.pathsep + env['PATH']
    return env, log


def placeholder_env(argv: List[str]) -> Dict[str, str]:
    """``$NAME`` placeholders of a command as their own names."""
    return {m: m for a in argv for m in re.findall(r'\$\{?([A-Za-z_]\w*)', a)}


HELP_BATCH = r"""
import contextlib, io, json, runpy, sys
found = {}
for path in sys.argv[1:]:
    buf = io.StringIO()
    sys.argv = [path, '--help']
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            runpy.run_path(path, run_name='__main__')
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException as e:  # noqa: B902
        code, _ = 1, buf.write(repr(e))
    found[path] = [code, buf.getvalue()]
print('\nHELP-JSON ' + json.dumps(found))
"""


def python_helps(scripts: List[str]) -> Dict[str, Tuple[bool, str]]:
    """``--help`` of every Python tool, each run as ``__main__`` in one subprocess (one interpreter start and one
    import of the stack for all of them): ``{script: (ok, help)}``."""
    import json
    res = run([sys.executable, '-c', HELP_BATCH, *[osp.join(ROOT, s) for s in scripts]])
    tail = res.stdout.rpartition('\nHELP-JSON ')[2]
    if not tail.startswith('{'):
        return {s: (False, res.stdout[-2000:] + res.stderr[-2000:]) for s in scripts}
    found = json.loads(tail)
    return {
        s: (code == 0 and 'usage' in text.lower(), text)
        for s, (code, text) in ((s, found[osp.join(ROOT, s)]) for s in scripts)
    }


def run_launcher(tool: str, cmd: Command, tmp: str) -> Tuple[bool, str]:
    """The dry run of a shell launcher: the documented command with ``PYTHON`` and ``srun`` recording their
    arguments; it must exit 0 and start a Python file of the repository."""
    folder = osp.join(tmp, re.sub(r'\W', '_', tool))
    env, log = make_recorder(folder)
    env.update({k: v for k, v in cmd.env.items() if k != 'OUT'})
    env.update(placeholder_env(cmd.argv))
    argv = cmd.argv[1:] if cmd.argv[0] in ('bash', 'sh') else cmd.argv
    res = run(['bash', osp.join(ROOT, tool), *argv[1:]], cwd=folder, env=env)
    calls = open(log).read() if osp.exists(log) else ''
    scripts = re.findall(r'(\S+\.py)\b', calls)
    ok = res.returncode == 0 and bool(scripts) and all(
        osp.isfile(s if osp.isabs(s) else osp.join(ROOT, s)) for s in scripts)
    return ok, f'exit {res.returncode}\n{res.stdout}{res.stderr}\ncalls:\n{calls}'


def run_entry(tool: str, tmp: str) -> Tuple[bool, str]:
    """The dry run of ``orl-pipeline`` / ``mim run orl-plugin pipeline``."""
    exe = shutil.which(tool, path=tool_env()['PATH'])
    if exe is None:
        pytest.skip(f'{tool} is not installed')
    argv = [exe, 'synthetic'] if tool == 'orl-pipeline' else [exe, 'run', 'orl-plugin', 'pipeline', 'synthetic']
    res = run([*argv, '--dry-run', '--work-dir', osp.join(tmp, tool)])
    return res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tree():
    return check_tree(ROOT)


def test_every_page_is_read():
    pages = doc_files()
    for page in ('README.md', 'docs/en/get_started.md', 'configs/byol/README.md', 'configs/mocov2/README.md',
                 'configs/orl/README.md', 'configs/benchmarks/README.md', 'projects/orl_evidence/README.md'):
        assert page in pages, page
    for folder in ('user_guides', 'advanced_guides', 'notes'):
        assert glob.glob(f'docs/en/{folder}/*.md', root_dir=ROOT), folder


def test_links_paths_and_names_exist(tree):
    problems, _, pending = tree
    if pending:
        print('pending pages (linked, written by another change):', ', '.join(pending))
    assert not problems, 'the docs name what the tree does not have:\n' + '\n'.join(map(str, problems))


def test_readme_is_short():
    with open(osp.join(ROOT, 'README.md')) as f:
        assert len(f.read().splitlines()) <= 250


def test_every_command_runs_as_written(tree, tmp_path):
    """Each repository tool once: --help (and the options the docs give it), or a dry run."""
    _, cmds, _ = tree
    by_tool: Dict[str, List[Command]] = {}
    for cmd in sorted(cmds, key=lambda c: c.inline):  # a block's command first: it is the one run
        by_tool.setdefault(tool_of(cmd.argv), []).append(cmd)
    assert {'orl-pipeline', 'make'} <= set(by_tool), sorted(by_tool)
    scripts = sorted(t for t in by_tool if t.endswith('.py'))
    # orl-pipeline is tools/pipeline.py's command line: the same parser and help
    helps = python_helps(sorted(set(scripts) | {'tools/pipeline.py'}))
    failures = []
    for tool, uses in sorted(by_tool.items()):
        where = ', '.join(f'{c.file}:{c.line}' for c in uses[:3])
        if tool == 'make':
            makefile = open(osp.join(ROOT, 'Makefile')).read()
            for target in sorted({a for c in uses for a in c.argv[1:] if not a.startswith('-')}):
                if not re.search(rf'^{re.escape(target)}:', makefile, flags=re.M):
                    failures.append(f'make has no target {target} ({where})')
                elif run(['make', '-n', target]).returncode != 0:
                    failures.append(f'make -n {target} failed ({where})')
            continue
        if tool.endswith('.py'):
            ok, out = helps[tool]
        elif tool.endswith('.sh') and not dry_runnable(tool):
            res = run(['bash', '-n', osp.join(ROOT, tool)])  # not run: its syntax only
            ok, out = res.returncode == 0, res.stderr
        elif tool.endswith('.sh'):
            ok, out = run_launcher(tool, uses[0], str(tmp_path))
        else:
            ok, out = run_entry(tool, str(tmp_path))
        if not ok:
            failures.append(f'{tool} ({where}) did not run:\n{out[-2000:]}')
            continue
        if tool.endswith('.py') or tool == 'orl-pipeline':
            text = out if tool != 'orl-pipeline' else helps['tools/pipeline.py'][1]
            for cmd in uses:
                missing = [o for o in options(cmd.argv) if not re.search(rf'(?<![\w-]){re.escape(o)}(?![\w-])', text)]
                if missing:
                    failures.append(f'{cmd.file}:{cmd.line}: {tool} has no option {", ".join(missing)}')
        if tool == 'orl-pipeline':
            for cmd in uses:
                preset = next((a for a in cmd.argv[1:] if not a.startswith('-')), None)
                if preset and not placeholder(preset) and not re.search(rf'\b{re.escape(preset)}\b',
                                                                        helps['tools/pipeline.py'][1]):
                    failures.append(f'{cmd.file}:{cmd.line}: orl-pipeline has no preset {preset}')
    assert not failures, '\n'.join(failures)


# --------------------------------------------------------------------------------------------------------------------
# the checker itself
# --------------------------------------------------------------------------------------------------------------------
def test_the_checker_reports_a_dead_link(tmp_path):
    readme = tmp_path / 'README.md'
    text = open(osp.join(ROOT, 'README.md')).read()
    readme.write_text(text + '\nSee [the missing page](docs/en/no_such_page.md).\n')
    problems, _, _ = check_file(str(readme), 'README.md', ROOT)
    assert [p.what for p in problems] == ['dead link: docs/en/no_such_page.md']
    clean, _, _ = check_file(osp.join(ROOT, 'README.md'), 'README.md', ROOT)
    assert not clean


@pytest.mark.parametrize('snippet, expected', [
    ('[x](get_started.md#no-such-heading)', 'no heading #no-such-heading'),
    ('[x](#nowhere)', 'no heading #nowhere on this page'),
    ('`configs/byol/no_such_config.py`', 'no such path: configs/byol/no_such_config.py'),
    ('`tests/test_tools/test_docs.py::test_no_such_test`', 'no test test_no_such_test'),
    ('`byol_resnet50_8xb64-coslr-999e_coco.py`', 'no file of that name'),
    ('`_base_/models/no_such_model.py`', 'no such config fragment'),
    ('```bash\npython tools/no_such_tool.py --help\n```', 'no such tool: tools/no_such_tool.py'),
])
def test_the_checker_reports_what_is_missing(tmp_path, snippet, expected):
    page = tmp_path / 'page.md'
    page.write_text(f'# A page\n\n{snippet}\n')
    problems, _, _ = check_file(str(page), 'docs/en/page.md', ROOT)
    assert any(expected in p.what for p in problems), problems


def test_the_checker_lets_placeholders_pass(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# A page\n\n## Two words, `code`\n\n[up](#two-words-code) [start](../get_started.md)\n\n'
                    '```bash\ntools/dist_test.sh CONFIG $S1 8   # configs/{byol,mocov2}/*.py\n'
                    'orl-pipeline folder --data-root /path/to/photos --work-dir work_dirs/x\n'
                    'NNODES=2 tools/dist_train.sh configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py 8 \\\n'
                    '    --cfg-options env_cfg.dist_cfg.backend=gloo\n```\n'
                    '`data/coco/orl/knn.orlstore`, `mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py`, `train.py`\n')
    problems, cmds, _ = check_file(str(page), 'docs/en/user_guides/page.md', ROOT)
    assert not problems
    assert [tool_of(c.argv) for c in cmds] == ['tools/dist_test.sh', 'orl-pipeline', 'tools/dist_train.sh']
    assert cmds[2].env == {'NNODES': '2'} and cmds[2].argv[-1] == 'env_cfg.dist_cfg.backend=gloo'


def test_anchors_are_githubs():
    assert slug("The paper's transfer protocol") == 'the-papers-transfer-protocol'
    assert slug('Selective search on large images (`max_size`)') == 'selective-search-on-large-images-max_size'
    assert slug('MoCo v2, version-2 scenes') == 'moco-v2-version-2-scenes'
    assert expand('a{b,c}d') == ['abd', 'acd'] and expand('x{1,2}y{3,4}') == ['x1y3', 'x1y4', 'x2y3', 'x2y4']
