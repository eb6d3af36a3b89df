#!/usr/bin/env python3
"""Size figures of the product code, for reviews of its shape: lines per crate, the longest
functions, and `pub` items per crate. Product code is `src/` and `crates/*/src/`, without unit
test modules (`#[cfg(test)] mod ...` blocks and `tests.rs`/`tests/` files).

    scripts/code-stats.py            # the summary
    scripts/code-stats.py --over 100 # every function longer than 100 lines (exit 1 if any)
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = {
    "twinops": ROOT / "src",
    "twinops-core": ROOT / "crates/core/src",
    "twinops-iothub": ROOT / "crates/iothub/src",
    "twinops-emulator": ROOT / "crates/emulator/src",
}


def strip(text):
    """The text with comments, string and char literals blanked (newlines kept), so braces count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not text[i - 1].isalnum() and text[i - 1] != "_"):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def without_tests(code):
    """Blanks `#[cfg(test)]` items (their lines stay, empty)."""
    lines = code.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("#[cfg(test)]"):
            # The item that follows: to its closing brace or semicolon.
            depth, j, opened = 0, i + 1, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                opened = opened or "{" in lines[j]
                if (opened and depth <= 0) or (not opened and lines[j].rstrip().endswith(";")):
                    break
                j += 1
            for k in range(i, min(j + 1, len(lines))):
                lines[k] = ""
            i = j + 1
        else:
            i += 1
    return "\n".join(lines)


def files(crate_dir):
    for p in sorted(crate_dir.rglob("*.rs")):
        if p.name == "tests.rs" or "tests" in p.relative_to(crate_dir).parts[:-1]:
            continue
        yield p


FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(path):
    code = without_tests(strip(path.read_text()))
    out = []
    for m in FN.finditer(code):
        # The body: the first `{` after the signature (a `;` first means no body).
        j = m.end()
        depth = 0
        while j < len(code) and code[j] not in "{;":
            j += 1
        if j >= len(code) or code[j] == ";":
            continue
        start = code.count("\n", 0, m.start()) + 1
        k = j
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        end = code.count("\n", 0, k) + 1
        out.append((end - start + 1, f"{path.relative_to(ROOT)}:{start}", m.group(1)))
    return out


PUB = re.compile(r"^\s*pub\s+(?:async\s+|const\s+|unsafe\s+)*(fn|struct|enum|trait|type|const|static|mod|use)\b", re.M)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--over", type=int, help="list every function longer than this many lines")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    all_fns = []
    rows = []
    for name, d in CRATES.items():
        loc = pubs = 0
        for p in files(d):
            code = without_tests(strip(p.read_text()))
            loc += sum(1 for line in code.split("\n") if line.strip())
            pubs += len(PUB.findall(code))
            all_fns.extend(functions(p))
        rows.append((name, loc, pubs))
    all_fns.sort(reverse=True)
    if args.over is not None:
        over = [f for f in all_fns if f[0] > args.over]
        for n, at, name in over:
            print(f"{n:5} {at} {name}")
        print(f"{len(over)} function(s) longer than {args.over} lines")
        return 1 if over else 0
    print("crate               lines of code (no blank, comment or test lines)   pub items")
    for name, loc, pubs in rows:
        print(f"{name:20} {loc:8} {pubs:12}")
    print(f"\nlongest functions (lines):")
    for n, at, name in all_fns[: args.top]:
        print(f"{n:5} {name} ({at})")
    print(f"\nfunctions over 100 lines: {sum(1 for f in all_fns if f[0] > 100)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
