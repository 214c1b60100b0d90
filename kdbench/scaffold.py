"""``kdbench new KIND NAME``: a plugin package skeleton, ready to install and run.

It writes a folder ``NAME/`` with a ``pyproject.toml`` whose entry point in the ``kdbench``
group registers the plugin, the plugin's module, a benchmark file that uses it and a test
that checks it with the conformance kit (:mod:`kdbench.testing`)::

    kdbench new method my-kd
    cd my-kd && pip install -e . && python -m pytest && kdbench run my-kd.toml --smoke

Every skeleton (:mod:`kdbench.skeletons`) is a working plugin of its kind, so each step
of making it one's own can be checked. A name that is not a plain lower-case name, one that
an installed plugin already registers for the kind, or a folder that exists is refused in
one line (exit code 2) before anything is written.
"""

from __future__ import annotations

import argparse
import re
import string
from pathlib import Path

from kdbench.errors import KdbenchError

KINDS = {"method": "methods", "dataset": "datasets", "model": "students",
         "teacher": "teachers", "metric": "metrics", "executor": "executors"}
"""``kdbench new`` kinds and the registry table each registers in."""

NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME = 40


def add_command(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
                ) -> None:
    """Register ``kdbench new`` on the command line's subcommands."""
    new = sub.add_parser("new", parents=parents, help="write a plugin package (method, "
                         "dataset, model, teacher, metric or executor) with its entry point, "
                         "a benchmark file and a test, ready to `pip install -e`")
    new.add_argument("kind", choices=sorted(KINDS), help="what the plugin registers")
    new.add_argument("name", help="the registered name, e.g. my-kd: lower-case letters and "
                     "digits, words joined by - or _; also the folder's name")
    new.add_argument("--dir", type=Path, default=Path("."), metavar="DIR",
                     help="where the folder NAME/ is written (default: here)")


def cmd_new(args: argparse.Namespace) -> int:
    """``kdbench new``: write the package and say what to type next."""
    folder = write(args.kind, args.name, args.dir)
    here, there = Path.cwd().resolve(), folder.resolve()
    shown = there.relative_to(here) if there.is_relative_to(here) else there
    names = names_of(args.name)
    print(f"kdbench: wrote {shown}/ ({names['dist']}: {args.kind} {args.name!r}); next:\n"
          f"  cd {shown}\n  pip install -e .\n  python -m pytest\n"
          f"  kdbench run {args.name}.toml --smoke")
    return 0


def names_of(name: str) -> dict[str, str]:
    """The names a skeleton uses: the registered name, module, entry point, distribution,
    class."""
    ident = name.replace("-", "_")
    return {"name": name, "module": f"kdbench_{ident}", "plugin": ident,
            "dist": f"kdbench-{name.replace('_', '-')}",
            "cls": "".join(part.capitalize() for part in ident.split("_"))}


def check_name(kind: str, name: str) -> None:
    """Refuse a kind kdbench does not know and a name that is not a plain plugin name."""
    if kind not in KINDS:
        raise KdbenchError(f"new: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise KdbenchError(f"new {kind}: {name!r} is not a plugin name: use 1 to "
                           f"{MAX_NAME} lower-case letters and digits, starting with a letter, "
                           "words joined by single - or _ (e.g. my-kd)")


def check_unregistered(kind: str, name: str) -> None:
    """Refuse a name an installed plugin already registers for ``kind``: two plugins that
    register one name stop kdbench until one is disabled."""
    from kdbench.plugins import Plugins

    table = Plugins.load().table(KINDS[kind])
    if name in table:
        raise KdbenchError(f"new {kind}: {kind} {name!r} is already registered by the "
                           f"installed plugin {table[name].plugin!r}; pick another name")


def render(kind: str, name: str) -> dict[str, str]:
    """The files of the skeleton: relative path -> text."""
    from kdbench import skeletons

    names = names_of(name)
    fields = {**names, "description": f"{name}: {skeletons.DESCRIPTIONS[kind]} for kdbench"}
    parts = skeletons.SKELETONS[kind]

    def fill(template: str) -> str:
        return string.Template(template).substitute(fields)

    return {"pyproject.toml": fill(skeletons.PYPROJECT), ".gitignore": skeletons.GITIGNORE,
            f"{names['module']}.py": fill(parts["module"]),
            f"tests/test_{names['plugin']}.py": fill(parts["test"]),
            f"{name}.toml": fill(parts["bench"])}


def write(kind: str, name: str, where: Path = Path(".")) -> Path:
    """Write the skeleton of a ``kind`` plugin called ``name`` into ``where/name``; its path."""
    check_name(kind, name)
    folder = where / name
    if folder.exists():
        raise KdbenchError(f"new {kind}: {folder} already exists; pick another name or "
                           "--dir, or remove it")
    check_unregistered(kind, name)
    files = render(kind, name)
    try:
        folder.mkdir(parents=True)
        for path, text in files.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise KdbenchError(f"new {kind}: cannot write {folder}: "
                           f"{error.strerror or error}") from None
    return folder

