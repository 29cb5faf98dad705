"""Compaction that never grants what was not used — or records exactly what it widened.

* S3 object keys → ``folder/*`` where a folder directly holds more than ``threshold`` distinct
  keys and sub-folders (:func:`generalize_object_arns`), never over a key only ever denied.
* Action wildcards → written only when the catalog expands them today to actions that are all in
  the statement (the expansion is recorded).
* Resources a call created → the resource type's ARN format, keeping what the caller named and
  writing ``*`` for the identifier AWS generated (:func:`created_resource_patterns`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from iamtrim import catalog
from iamtrim.model import whole_escapes


@dataclass
class _Folder:
    """One folder of the object keys: the leaves directly in it, its sub-folders by name."""

    keys: set[str] = field(default_factory=set)  # exact ARNs of the keys directly in this folder
    children: dict[str, _Folder] = field(default_factory=dict)
    folded: str = ""  # ``folder/*`` when the store already folded it (it came in as a resource)
    denied: bool = False  # a denied-only key (or folded denied keys) lies in or under it
    grants: int = 0  # allowed keys (or store folds) in or under it

    def entries(self) -> int:
        return len(self.keys) + len(self.children)


def _folder_tree(arns: Iterable[str]) -> dict[str, _Folder]:
    """Buckets (``arn:aws:s3:::bucket``) → their folder trees. ``bucket/a/*`` (a fold the store
    made; a literal ``*`` in a key arrives escaped as ``${*}``) marks folder ``a`` folded."""
    roots: dict[str, _Folder] = {}
    for arn in arns:
        node, path = _descend(roots, arn)
        node.grants += 1
        for n in path:
            n.grants += 1
        if arn.endswith("/*"):
            node.folded = arn
        else:
            node.keys.add(arn)
    return roots


def _descend(roots: dict[str, _Folder], arn: str) -> tuple[_Folder, list[_Folder]]:
    """The folder holding *arn* (created with its ancestors) and the folders above it."""
    head, _, key = arn.partition(":::")
    bucket, _, path = key.partition("/")
    root = f"{head}:::{bucket}"
    node = roots.get(root)
    if node is None:
        node = roots[root] = _Folder()
    above: list[_Folder] = []
    for part in path.split("/")[:-1]:
        above.append(node)
        child = node.children.get(part)
        if child is None:
            child = node.children[part] = _Folder()
        node = child
    return node, above


def generalize_object_arns(arns: Iterable[str], threshold: int, denied: Iterable[str] = ()) -> dict[str, str]:
    """Map each S3 object ARN (``arn:aws:s3:::bucket/a/b/c``) to itself or a covering ``.../*``.

    The rule, per folder (docs/commands/generate-policy.md, "Widening rules"): a folder's
    *entries* are the distinct keys directly in it plus its direct sub-folders, each sub-folder
    counting as one however much it holds. A folder with more than *threshold* entries folds into
    ``folder/*``, and a key is granted on the highest folded folder above it (a folded folder
    covers everything below it), else exactly. The bucket is a folder like any other: it folds
    into ``bucket/*`` only when it alone holds more than *threshold* entries. A folder's entries
    do not depend on the threshold, so a larger threshold folds a subset of the folders a smaller
    one folds: it never grants more (tests/test_synth_rules.py holds this on random trees).

    ``folder/*`` in *arns* is a fold the store already made (past its own bound,
    docs/store.md): it stays folded whatever the threshold.

    *denied* are object ARNs (or folded ``folder/*``) only ever denied for this action. A fold
    that would cover one is not granted: the folder is granted as its allowed parts instead —
    its own allowed keys exactly, each sub-folder that holds allowed keys and no denied one as
    ``sub/*`` (exactly, when it holds a single key), a sub-folder that holds both split the same
    way. Only a fold the store made can still cover a denied key (generate-policy reports it).
    """
    arns = sorted(set(arns))
    roots = _folder_tree(arns)
    for d in sorted(set(denied)):
        head, _, key = d.partition(":::")
        bucket, _, _ = key.partition("/")
        root = roots.get(f"{head}:::{bucket}")
        if root is None:
            continue
        root.denied = True
        node = root
        for part in key.split("/")[1:-1]:
            child = node.children.get(part)
            if child is None:
                break
            child.denied = True
            node = child
        else:
            if d.endswith("/*"):  # denied keys folded by the store: everything under node
                _mark_denied(node)
    mapping: dict[str, str] = {}

    def grant(prefix: str, node: _Folder, cover: str) -> None:
        if node.folded:
            mapping[node.folded] = cover
        for arn in node.keys:
            mapping[arn] = cover
        for name, child in node.children.items():
            grant(f"{prefix}/{name}", child, cover)

    def split(prefix: str, node: _Folder) -> None:
        """Grant the allowed parts of a folder that would fold but holds a denied key."""
        if node.folded:  # the store folded it: nothing to split
            grant(prefix, node, f"{prefix}/*")
            return
        for arn in node.keys:
            mapping[arn] = arn
        for name, child in sorted(node.children.items()):
            sub = f"{prefix}/{name}"
            if child.denied:
                split(sub, child)
            elif child.grants == 1 and len(child.keys) == 1:
                visit(sub, child)  # a single key: exact is narrower than sub/*
            elif child.grants:
                grant(sub, child, f"{sub}/*")

    def visit(prefix: str, node: _Folder) -> None:
        if node.folded or node.entries() > threshold:
            if node.denied:
                split(prefix, node)
            else:
                grant(prefix, node, f"{prefix}/*")
            return
        for arn in node.keys:
            mapping[arn] = arn
        for name, child in sorted(node.children.items()):
            visit(f"{prefix}/{name}", child)

    for bucket_arn, tree in sorted(roots.items()):
        visit(bucket_arn, tree)
    for arn in arns:
        mapping.setdefault(arn, arn)
    return mapping


def _mark_denied(node: _Folder) -> None:
    node.denied = True
    for child in node.children.values():
        _mark_denied(child)


def action_wildcards(actions: Iterable[str]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Replace groups of actions by ``svc:Prefix*`` where the expansion is exactly a subset.

    Returns (actions and patterns, {pattern: expansion}). Only prefixes ending on a word boundary
    of the action names are tried (``s3:GetObject*``), and a pattern must cover at least 3 actions
    to be worth the loss of explicitness.
    """
    remaining = sorted(set(actions))
    by_service: dict[str, list[str]] = {}
    for a in remaining:
        by_service.setdefault(a.split(":")[0], []).append(a)
    out: list[str] = []
    expansions: dict[str, tuple[str, ...]] = {}
    for service, acts in sorted(by_service.items()):
        pool = set(acts)
        candidates: set[str] = set()
        for a in acts:
            name = a.split(":", 1)[1]
            for i in range(3, len(name)):
                if name[i].isupper():
                    candidates.add(f"{service}:{name[:i]}*")
        for pattern in sorted(candidates, key=lambda p: (-len(catalog.expand_action_pattern(p)), p)):
            expansion = catalog.expand_action_pattern(pattern)
            if len(expansion) >= 3 and expansion <= pool:
                pool -= expansion
                out.append(pattern)
                expansions[pattern] = tuple(sorted(expansion))
        out.extend(sorted(pool))
    return tuple(sorted(out)), expansions


@functools.lru_cache(maxsize=1 << 16)
def typed_arn(
    action: str, arn: str
) -> tuple[catalog.ResourceType | None, tuple[tuple[str, str], ...] | None]:
    """*arn*'s resource type for *action* and the values of that type's template variables
    (``catalog.resource_type_for_arn``, ``catalog.arn_variables``). Three rules ask it of every
    resource each action was seen on (generated names, template patterns, created resources):
    matching each ARN once instead of three times was a third of resolving a busy role's 44k
    rows. Bounded: ARNs come from records."""
    return catalog.typed_variables(action, arn)


def generalize_by_template(action: str, arns: Iterable[str], threshold: int) -> dict[str, str]:
    """Non-S3 ARNs of one resource type, more than *threshold* of them: keep the template variables
    on which they all agree and write ``*`` for the ones that vary (16 log streams of one log group
    → ``log-group:G:log-stream:*``). Fewer than *threshold*: each ARN is kept as it is.
    """
    by_type: dict[str, list[tuple[str, tuple[tuple[str, str], ...]]]] = {}
    mapping: dict[str, str] = {}
    for arn in sorted(set(arns)):
        mapping[arn] = arn
        rt, values = typed_arn(action, arn)
        if rt is None or "*" in arn or "?" in arn:
            continue
        if values is not None:
            by_type.setdefault(rt.arn_template, []).append((arn, values))
    for template, all_items in by_type.items():
        # Partition, region and account are never generalized: group by them. A template's
        # values come in the order of its variables: the scope's places are the same for each.
        places = [i for i, (n, _) in enumerate(all_items[0][1]) if n in _SCOPE_VARIABLES]
        scopes: dict[tuple[str, ...], list[tuple[str, tuple[tuple[str, str], ...]]]] = {}
        for arn, values in all_items:
            scope = tuple(values[i][1] for i in places)
            scopes.setdefault(scope, []).append((arn, values))
        for items in scopes.values():
            if len(items) <= threshold:
                continue
            names = [n for n, _ in items[0][1]]
            agreed: dict[str, str] = {}
            varying: dict[str, list[str]] = {}
            for i, name in enumerate(names):
                seen = list({vals[i][1] for _, vals in items})  # in no order: read by min and max
                agreed[name] = seen[0] if len(seen) == 1 else _common_prefix_pattern(seen)
                if len(seen) > 1:
                    varying[name] = seen
            identifying = [n for n in names if n not in _SCOPE_VARIABLES]
            if identifying and all(agreed[n] == "*" for n in identifying):
                # Nothing left that names the resources (20 buckets → arn:aws:s3:::*): fall back to
                # the names' common stem (acme-data-*), or keep the ARNs exact when there is none.
                stems = {n: _common_stem_pattern(v) for n, v in varying.items()}
                if any(stem is None for stem in stems.values()):
                    continue
                agreed.update({n: stem for n, stem in stems.items() if stem is not None})
            pattern = catalog.fill_template(template, agreed)
            for arn, _ in items:
                mapping[arn] = pattern
    return mapping


_SCOPE_VARIABLES = frozenset({"Partition", "Region", "Account", "AccountId"})


def _shared_prefix(values: list[str]) -> str:
    """The characters every value starts with (a string prefix, not a path)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    i = 0
    while i < len(low) and low[i] == high[i]:
        i += 1
    return whole_escapes(low[:i])  # never cut into a literal's ${*}


def _common_stem_pattern(values: list[str]) -> str | None:
    """``["churn-xgb-2026-10-01", "churn-xgb-2026-10-02"]`` → ``churn-xgb-*``: the common prefix
    without its trailing numbering, cut at a separator; ``None`` when no word is shared."""
    prefix = _shared_prefix(values)
    stem = prefix.rstrip("0123456789-_.:/")
    if not stem:
        return None
    if len(stem) < len(prefix):
        return prefix[: len(stem) + 1] + "*"
    cut = max(stem.rfind(sep) for sep in "-_.:/")
    return prefix[: cut + 1] + "*" if cut > 0 else None


def _common_prefix_pattern(values: list[str]) -> str:
    """``["fn:1", "fn:2"]`` → ``fn:*``: the common prefix cut back to a separator, then ``*``."""
    prefix = _shared_prefix(values)
    cut = max(prefix.rfind(sep) for sep in ":/")
    return prefix[: cut + 1] + "*" if cut >= 0 else "*"


# Verbs of actions that bring a new resource into being. The created resource's identifier is
# generated by AWS (``i-…``, ``sg-…``, ``ami-…``, a version number) and only appears in the
# response, so a policy naming it would allow the call that already happened and refuse the next.
_CREATE_VERBS = (
    "Create",
    "Run",
    "Allocate",
    "Import",
    "Copy",
    "Register",
    "Publish",
    "Request",
    "Launch",
    "Clone",
    "Purchase",
    "Provision",
)


def creates_resources(action: str) -> bool:
    """Whether the action's verb creates something (``RunInstances``, ``CreateTable``, ...)."""
    return bool(_created_noun(action))


def has_created_patterns(action: str) -> bool:
    """Whether :func:`created_resource_patterns` can give *action* anything: its verb creates,
    it is not a read, and one of its resource types has a generated id (or it publishes
    versions). Asked once per action, so that 30k log streams need not be asked one by one."""
    noun = _created_noun(action)
    if not noun or catalog.access_level(action) in ("List", "Read"):
        return False
    return noun == "version" or any(_generated_variables(noun, rt) for rt in catalog.resource_types(action))


@functools.lru_cache(maxsize=1 << 15)
def _created_noun(action: str) -> str:
    """``ec2:RunInstances`` → ``instance``; ``""`` when the action's verb creates nothing.
    Cached: asked for every resource an action was seen on (bounded like the catalog's
    action caches: action names come from records)."""
    name = action.partition(":")[2]
    for verb in _CREATE_VERBS:
        if name.startswith(verb) and len(name) > len(verb) and name[len(verb)].isupper():
            return _norm(name[len(verb) :])
    return ""


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower()).removesuffix("s")


def created_resource_patterns(action: str, arn: str) -> tuple[str, ...]:
    """The ARN patterns to grant a create-style *action* on instead of the *arn* it created.

    A resource counts as created by the call when the action's verb creates (``Create``, ``Run``,
    ``Publish``, …) and its noun names the resource type (``RunInstances`` → ``instance``,
    ``CreateTrafficMirrorFilterRule`` → ``traffic-mirror-filter-rule``, but not the
    ``traffic-mirror-filter`` it is added to). In such an ARN, the variables the service
    authorization reference calls ``…Id`` are AWS-generated and become ``*``; names the caller
    chose (``${UserName}``, ``${DbInstanceName}``) are kept, since they were in the request.
    ``PublishVersion`` on a qualified function ARN (``function:f:7``, taken from the response) is
    granted on the function, which AWS authorizes, and on ``function:f:*``.
    Returns ``()`` when the rule does not apply (the ARN stays as it is).
    """
    noun = _created_noun(action)
    if not noun or catalog.access_level(action) in ("List", "Read"):
        return ()
    rt, values = typed_arn(action, arn)
    if rt is None or "*" in arn or "?" in arn:
        return ()
    if values is None:
        return ()
    if noun == "version" and values:
        name, value = values[-1]
        base, _, qualifier = value.rpartition(":")
        if base and qualifier.isdigit():
            filled = dict(values)
            unqualified = catalog.fill_template(rt.arn_template, {**filled, name: base})
            return (unqualified, catalog.fill_template(rt.arn_template, {**filled, name: f"{base}:*"}))
        return ()
    generated = _generated_variables(noun, rt)
    if not generated:
        return ()
    pattern = catalog.fill_template(rt.arn_template, {n: "*" if n in generated else v for n, v in values})
    return (pattern,) if pattern != arn else ()


@functools.lru_cache(maxsize=1 << 12)
def _generated_variables(noun: str, rt: catalog.ResourceType) -> frozenset[str]:
    """The variables of *rt*'s ARN that AWS generates when an action creating *noun* makes one
    (its ``…Id`` variables), or none when *noun* does not name the type. Per (noun, type), not
    per ARN: a log group's 30k streams ask it once. Bounded: the catalog's types."""
    type_noun = _norm(rt.name)
    if not type_noun or not noun.endswith(type_noun):
        return frozenset()
    return frozenset(n for n in rt.variables if n.endswith("Id") and n not in _SCOPE_VARIABLES)
