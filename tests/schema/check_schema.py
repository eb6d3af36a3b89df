"""Checks the manifest JSON Schema with Python's `jsonschema` (draft 2020-12, format checks on).

Usage: check_schema.py SCHEMA DOCUMENTS

SCHEMA is schema/manifest.schema.json; DOCUMENTS is a JSON list of {"name", "document", "valid"}
written by tests/it/schema_tools.rs. The schema must pass the draft 2020-12 meta-schema with the
format checker on (so every `pattern` must be a `regex` Python compiles), every `pattern` must
compile with `re`, and each document must be valid exactly when it says so. Prints one summary
line and exits 0, or prints every disagreement and exits 1.
"""

import json
import re
import sys

from jsonschema import Draft202012Validator


def patterns(node):
    """Every `pattern` keyword's value in the schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from patterns(item)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    with open(sys.argv[2], encoding="utf-8") as f:
        documents = json.load(f)
    checker = Draft202012Validator.FORMAT_CHECKER
    Draft202012Validator.check_schema(schema, format_checker=checker)
    found = list(patterns(schema))
    for p in found:
        re.compile(p)
    validator = Draft202012Validator(schema, format_checker=checker)
    wrong = []
    for d in documents:
        errors = [e.message for e in validator.iter_errors(d["document"])]
        if (not errors) != d["valid"]:
            wrong.append(f"{d['name']}: expected valid={d['valid']}, got {errors or 'valid'}")
    if wrong:
        print("\n".join(wrong))
        sys.exit(1)
    print(f"python jsonschema: {len(found)} patterns compiled, {len(documents)} documents as expected")


main()
