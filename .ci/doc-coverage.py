#!/usr/bin/env python3
"""Lists the public symbols of a module that have no doc comment of their own.

Reads the symbol graphs that `swift package generate-documentation` extracts
(SCRATCH/<triple>/extracted-symbols/<package>/<Module>/*.symbols.json) and checks every
public or open symbol declared in this repository's Sources/: it needs a `///` comment written
above its own declaration. A comment the symbol graph copies from elsewhere does not count:
the protocol requirement's comment on an implementation or a default implementation, or the
standard library's on `description`, `==`, `makeAsyncIterator()`. Symbols the compiler
synthesizes (no source location: `hash(into:)` of an enum, defaults from the standard library)
are not ours to document and are skipped.

Usage: doc-coverage.py SCRATCH_PATH MODULE... ; prints a summary per module and each
undocumented symbol as `file:line: kind name`; exits 1 if there is one, 2 if a module's
symbol graph is missing.
"""

import glob
import json
import os
import sys

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
SOURCES = os.path.join(REPO, "Sources") + os.sep
# Lines allowed between the end of a comment and its declaration's name: attributes such as
# `@inlinable`, `@discardableResult`, `@available(…)`, `nonisolated`, a wrapped signature.
MAX_GAP = 10


def symbol_graph_files(scratch, module):
    """The newest extraction of `module` under `scratch` (one per package directory name)."""
    dirs = glob.glob(os.path.join(scratch, "*", "extracted-symbols", "*", module))
    if not dirs:
        return []
    newest = max(dirs, key=os.path.getmtime)
    return sorted(glob.glob(os.path.join(newest, "*.symbols.json")))


def path_of(uri):
    return uri[len("file://"):] if uri.startswith("file://") else uri


def comment_gap(symbol):
    """Lines from the end of the symbol's doc comment to its name; None if the comment is
    not in the symbol's own file (copied from another module or file) or is empty."""
    doc = symbol.get("docComment")
    if not doc or "uri" not in doc or not doc.get("lines"):
        return None
    location = symbol["location"]
    if path_of(doc["uri"]) != path_of(location["uri"]):
        return None
    if not any(line["text"].strip() for line in doc["lines"]):
        return None
    last = doc["lines"][-1].get("range", {}).get("end", {}).get("line")
    if last is None:
        return None
    return location["position"]["line"] - last


def comment_key(symbol):
    doc = symbol["docComment"]
    return (path_of(doc["uri"]), doc["lines"][0].get("range", {}).get("start", {}).get("line"))


def check(scratch, module):
    files = symbol_graph_files(scratch, module)
    if not files:
        print(f"{module}: no symbol graph under {scratch} (run generate-documentation first)")
        return None
    symbols = {}
    for file in files:
        with open(file) as handle:
            graph = json.load(handle)
        for symbol in graph["symbols"]:
            if symbol.get("accessLevel") not in ("public", "open"):
                continue
            location = symbol.get("location")
            if not location or not os.path.realpath(path_of(location["uri"])).startswith(SOURCES):
                continue
            symbols.setdefault(symbol["identifier"]["precise"], symbol)
    # A comment belongs to the declaration right below it. The symbol graph also puts it on
    # every symbol that inherits it (a default implementation, a conformance): of all the
    # symbols showing one comment, only the nearest below it owns it.
    nearest = {}
    for symbol in symbols.values():
        gap = comment_gap(symbol)
        if gap is not None and gap > 0:
            key = comment_key(symbol)
            nearest[key] = min(gap, nearest.get(key, gap))
    total = len(symbols)
    missing = []
    for symbol in symbols.values():
        gap = comment_gap(symbol)
        if gap is None or not 0 < gap <= MAX_GAP or gap != nearest[comment_key(symbol)]:
            location = symbol["location"]
            path = os.path.relpath(os.path.realpath(path_of(location["uri"])), REPO)
            name = ".".join(symbol["pathComponents"])
            missing.append((path, location["position"]["line"] + 1, symbol["kind"]["identifier"], name))
    documented = total - len(missing)
    print(f"{module}: {documented} of {total} public symbols have a doc comment of their own")
    for path, line, kind, name in sorted(missing):
        print(f"  {path}:{line}: {kind} {name}")
    return len(missing)


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    scratch, modules = argv[1], argv[2:]
    results = [check(scratch, module) for module in modules]
    if any(result is None for result in results):
        return 2
    return 1 if any(results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
