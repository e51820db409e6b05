"""Every URL pattern the resolver knows, for tests that walk them all (the second-factor gate in
tests/portal/test_gate.py, the authorization matrix in tests/portal/test_authz_matrix.py).

A route is a concrete view in the URLconf (includes flattened, namespaces joined), with the
named groups it captures and a way to fill them: with sample values that fit each group's
pattern, or with chosen values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

# Sample values tried, in order, for each captured part of a URL.
SAMPLES = ["1", "accounts", "user", "abc", "1-abc", str(uuid.UUID(int=1))]


@dataclass(frozen=True)
class Route:
    name: str | None  # "namespace:name", or None for an unnamed pattern
    regex: str  # the full pattern, without anchors
    params: tuple[tuple[str, str], ...]  # (group name, group pattern) in order

    @property
    def key(self) -> str:
        """What names this route in a table: its URL name, or its pattern when it has none."""
        return self.name or self.regex

    def fill(self, values: Mapping[str, str]) -> str:
        """The path with each captured group replaced by ``values[name]`` (not checked)."""
        out, last = [], 0
        for start, end, name, _body in _groups(self.regex):
            out += [self.regex[last:start], values[name]]
            last = end
        out.append(self.regex[last:])
        return "/" + re.sub(r"\\(.)", r"\1", "".join(out))

    @property
    def sample_path(self) -> str:
        values = {}
        for name, body in self.params:
            value = next((s for s in SAMPLES if re.fullmatch(body, s)), None)
            assert value is not None, f"no sample value fits <{name}> in {self.regex!r}: add one to SAMPLES"
            values[name] = value
        return self.fill(values)


def _strip(regex: str) -> str:
    return regex.removeprefix("^").removesuffix("\\Z").removesuffix("$")


def _groups(regex: str) -> Iterator[tuple[int, int, str, str]]:
    """Yield (start, end, name, body) for each top-level named group."""
    for match in re.finditer(r"\(\?P<(\w+)>", regex):
        depth, i = 1, match.end()
        while depth:
            if regex[i] == "\\":
                i += 2
                continue
            depth += {"(": 1, ")": -1}.get(regex[i], 0)
            i += 1
        yield match.start(), i, match.group(1), regex[match.end() : i - 1]


def all_routes() -> list[Route]:
    """Every concrete view in the URLconf, in resolver order."""

    def walk(patterns, prefix: str, namespace: str | None) -> Iterator[Route]:
        for p in patterns:
            regex = prefix + _strip(p.pattern.regex.pattern)
            if isinstance(p, URLResolver):
                ns = f"{namespace}:{p.namespace}" if namespace and p.namespace else (p.namespace or namespace)
                yield from walk(p.url_patterns, regex, ns)
            elif isinstance(p, URLPattern):
                name = f"{namespace}:{p.name}" if namespace and p.name else p.name
                params = tuple((group, body) for _s, _e, group, body in _groups(regex))
                yield Route(name, regex, params)

    routes = list(walk(get_resolver().url_patterns, "", None))
    assert len(routes) > 40, "the walk found too few routes; the URLconf walker is broken"
    return routes
