"""Load and validate ``orch.yaml`` recipes and library dependency recipes.

Validation is the published JSON Schema (``orch-recipe.schema.json``, the same file editors
use) plus the checks a schema cannot express (known policies, files that exist, the
dependency DAG). Every error names file:line:column and the field path.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import jsonschema
from jsonschema import Draft202012Validator

from orchestrator import archs
from orchestrator.errors import ConfigError
from orchestrator.plan import catalog
from orchestrator.recipe.model import (
    AuditOptions,
    DependencySpec,
    Exports,
    ProjectSource,
    Recipe,
    RepairOptions,
    SourceSpec,
    TestOptions,
    Unsupported,
)
from orchestrator.recipe.yamlsrc import Located, format_path, load_located
from orchestrator.util.hashing import sha256_file
from orchestrator.util.resources import data_dir

SCHEMA_FILE = Path(__file__).with_name("orch-recipe.schema.json")
DEFAULT_PYTHONS = ("3.9", "3.11")
DEFAULT_PLATFORMS = ("manylinux_2_31",)
DEFAULT_ARCHS = ("x86_64",)


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return loaded


@functools.cache
def _validator(kind: str) -> Draft202012Validator:
    root = schema()
    if kind == "recipe":
        return Draft202012Validator(root)
    # A library dependency file: the dependency definition, plus the schema version key.
    sub = {"$defs": root["$defs"], "$ref": "#/$defs/dependency"}
    return Draft202012Validator(sub)


# --- schema errors, in words -----------------------------------------------------------


def _describe(err: jsonschema.ValidationError, doc: Located) -> tuple[tuple[int, int], str]:
    path = tuple(err.absolute_path)
    where = doc.where(path)
    field = format_path(path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extras = [k for k in err.instance if k not in allowed]
        key = extras[0]
        where = doc.where((*path, key), key=True)
        hint = difflib.get_close_matches(key, allowed, n=1)
        did = f" (did you mean '{hint[0]}'?)" if hint else ""
        msg = (
            f"{format_path((*path, key))}: unknown key '{key}'{did}; allowed: {', '.join(allowed)}"
        )
    elif v == "required":
        msg = f"{field}: {err.message.replace('is a required property', 'is required')}"
    elif v == "type" and len(path) >= 2 and path[-2] in ("environment", "env"):
        msg = _env_type_message(field, str(path[-1]), err.instance, doc.text(path))
    elif v == "type":
        expected = err.validator_value
        words = " or ".join(expected) if isinstance(expected, list) else expected
        got = _kind(err.instance)
        msg = f"{field}: expected {_article(words)}, got {got} {err.instance!r}"
        if path and path[0] == "python" and isinstance(err.instance, float):
            msg += " (quote versions: '3.10' written bare is the number 3.1)"
        if len(path) == 2 and path[0] == "dependencies" and isinstance(err.instance, str):
            msg += f"; to use the library recipe, write `- use: {err.instance}`"
    elif v == "const" and path == ("schema",):
        msg = (
            f"schema: {err.instance!r} is not a recipe schema this orch reads; supported: "
            f"{err.validator_value} (write `schema: {err.validator_value}`)"
        )
    elif v == "pattern" and path and path[0] == "python":
        msg = f"{field}: '{err.instance}' is not a CPython version like '3.11' (or '3.13t', free-threaded)"
    elif v == "pattern" and path and path[-1] == "sha256":
        msg = f"{field}: expected 64 lowercase hex digits (a sha256), got {err.instance!r}"
    elif v in ("enum", "const"):
        options = err.validator_value if v == "enum" else [err.validator_value]
        msg = f"{field}: {err.instance!r} is not one of {', '.join(map(repr, options))}"
        hint = difflib.get_close_matches(str(err.instance), [str(o) for o in options], n=1)
        msg += f" (did you mean '{hint[0]}'?)" if hint else ""
    elif v == "oneOf":
        kinds = sorted({_schema_kind(s) for s in err.validator_value})
        msg = f"{field}: expected {' or '.join(kinds)}, got {_kind(err.instance)}"
    elif v in ("minItems", "minLength"):
        msg = f"{field}: must not be empty"
    elif v == "uniqueItems":
        msg = f"{field}: has duplicate entries"
    else:
        msg = f"{field}: {err.message}"
    line, col = (int(x) for x in where.rsplit(":", 2)[1:])
    return (line, col), f"{where}: {msg}"


def _env_type_message(field: str, key: str, value: object, text: str | None) -> str:
    """Environment values are strings: YAML reads `true`, `0755`, `1.10` as other things,
    and orch does not guess what the user meant."""
    written = text if text is not None else str(value)
    return (
        f"{field}: {written} is {_kind(value)} to YAML ({value!r}), not a string; environment "
        f'values are passed exactly as written only when quoted: {key}: "{written}"'
    )


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)


def _schema_kind(s: Mapping[str, Any]) -> str:
    t = s.get("type")
    if t == "array":
        return "a list of strings"
    if t == "object":
        return "a mapping"
    return _article(str(t))


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _validate(doc: Located, kind: str) -> None:
    errors = list(_validator(kind).iter_errors(doc.data))
    if not errors:
        return
    described = sorted({_describe(best_leaf(e), doc) for e in errors})
    lines = [text for _pos, text in described]
    raise ConfigError("\n".join(lines))


def best_leaf(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For oneOf errors whose branches all failed on type, keep the oneOf; otherwise the
    deepest branch error is the useful one (e.g. a bad key inside the mapping form)."""
    if err.validator == "oneOf" and err.context:
        deeper = [e for e in err.context if e.validator != "type" and len(e.absolute_path) > 0]
        if deeper:
            return best_leaf(max(deeper, key=lambda e: len(e.absolute_path)))
    return err


# --- the recipe ---------------------------------------------------------------------------


def load_recipe(file: Path | str) -> Recipe:
    path = Path(file).resolve()
    doc = load_located(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}:1:1: a recipe is a mapping with at least 'schema' and 'project'")
    _validate(doc, "recipe")
    data: dict[str, Any] = doc.data
    cat = catalog.load()

    platforms = tuple(data.get("platforms", DEFAULT_PLATFORMS))
    for i, policy in enumerate(platforms):
        try:
            cat.canonical(policy)
        except KeyError:
            raise catalog.policy_error(
                policy, doc.where(("platforms", i)), f"platforms[{i}]"
            ) from None
    arch_list = tuple(data.get("archs", DEFAULT_ARCHS))
    for i, arch in enumerate(arch_list):
        if arch not in archs.ARCHS:
            raise ConfigError(f"{doc.where(('archs', i))}: archs[{i}]: {archs.not_an_arch(arch)}")
    _check_policy_archs(doc, platforms, arch_list, data.get("images", {}))
    _check_images(doc, data.get("images", {}), platforms)
    _check_repair_plat(doc, data.get("repair", {}).get("plat"), arch_list)

    return Recipe(
        path=path,
        name=str(data.get("name") or _project_path(doc, data).name),
        project=_project(doc, data),
        python=tuple(data.get("python", DEFAULT_PYTHONS)),
        platforms=platforms,
        archs=arch_list,
        images=dict(data.get("images", {})),
        build_selectors=tuple(_as_list(data.get("build", ["*"]))),
        skip_selectors=tuple(_as_list(data.get("skip", []))),
        environment=dict(data.get("environment", {})),
        before_build=tuple(_as_list(data.get("before-build", []))),
        repair=_repair(data.get("repair", {})),
        dependencies=_dependencies(doc, data.get("dependencies", [])),
        mirrors=tuple(dict(m) for m in data.get("mirrors", [])),
        test=_test(data.get("test", {})),
        audit=_audit(data.get("audit", {})),
        origins={format_path(p): doc.where(p) for p in doc.marks},
    )


def _check_images(doc: Located, images: Mapping[str, str], platforms: tuple[str, ...]) -> None:
    """images: keys are the recipe's platforms, values local, pypa or an image reference."""
    cat = catalog.load()
    for policy, source in images.items():
        field = f"images.{policy}"
        if policy not in platforms:
            hint = difflib.get_close_matches(policy, list(platforms), n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"{doc.where(('images', policy), key=True)}: {field}: '{policy}' is not among "
                f"the recipe's platforms{did}; platforms: {', '.join(platforms)}"
            )
        where = doc.where(("images", policy))
        if source in catalog.IMAGE_SOURCES:
            _check_image_source(where, field, cat.canonical(policy), source)
        elif "/" not in source and ":" not in source:
            hint = difflib.get_close_matches(source, list(catalog.IMAGE_SOURCES), n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"{where}: {field}: '{source}' is not an image source{did}; write local, pypa "
                f"or an image reference with a tag or registry, e.g. myorg/manylinux:2026.01"
            )


def _check_image_source(where: str, field: str, pep600: str, source: str) -> None:
    cat = catalog.load()
    if source == "local" and pep600 not in cat.local:
        raise ConfigError(
            f"{where}: {field}: orch builds no local {pep600} image; local images exist for "
            f"{', '.join(cat.local)}"
        )
    if source == "pypa" and cat.pypa_policy(pep600) is None:
        raise ConfigError(
            f"{where}: {field}: pypa publishes no {pep600} image; write local or an image reference"
        )


def _tag_arch(tag: str) -> str | None:
    return next(
        (a for a in sorted(archs.ARCHS, key=len, reverse=True) if tag.endswith("_" + a)), None
    )


def _check_repair_plat(doc: Located, plat: str | None, arch_list: tuple[str, ...]) -> None:
    """repair.plat is one tag: it must be a known policy for the architecture of every job."""
    if plat is None:
        return
    where, field = doc.where(("repair", "plat")), "repair.plat"
    if plat.endswith("_{arch}"):
        policy, tag_arch = plat[: -len("_{arch}")], None
    else:
        tag_arch = _tag_arch(plat)
        if tag_arch is None:
            raise ConfigError(
                f"{where}: {field}: '{plat}' does not end in an architecture; write a tag such "
                f"as manylinux_2_17_x86_64, or manylinux_2_17_{{arch}} for every job's own"
            )
        policy = plat[: -len(tag_arch) - 1]
    try:
        catalog.load().canonical(policy)
    except KeyError:
        raise catalog.policy_error(policy, where, field) from None
    others = [a for a in arch_list if a != tag_arch]
    if tag_arch is not None and others:
        raise ConfigError(
            f"{where}: {field}: '{plat}' is a {tag_arch} tag, but the recipe also builds "
            f"{', '.join(others)}; write plat: {policy}_{{arch}} (each job's own architecture)"
        )


def _check_policy_archs(
    doc: Located, platforms: Iterable[str], arch_list: tuple[str, ...], images: Mapping[str, str]
) -> None:
    """A policy none of whose requested architectures exists is a mistake, not an empty plan."""
    cat = catalog.load()
    for i, policy in enumerate(platforms):
        pep600 = cat.canonical(policy)
        if images.get(policy) not in (None, "local", "pypa"):
            continue  # an explicit image: the user vouches for it
        available = cat.archs_for(pep600)
        if not any(a in available for a in arch_list):
            why = ""
            try:
                cat.choose(pep600, arch_list[0], images.get(policy))
            except catalog.NoImage as exc:
                why = f" ({exc.reason})"
            raise ConfigError(
                f"{doc.where(('platforms', i))}: platforms[{i}]: {policy} does not exist for "
                f"{', '.join(arch_list)}{why}; it exists for: {', '.join(available)}"
            )


def _project_path(doc: Located, data: Mapping[str, Any]) -> Path:
    raw = data["project"]
    rel = raw if isinstance(raw, str) else raw["path"]
    return (doc.file.parent / rel).resolve()


def _project(doc: Located, data: Mapping[str, Any]) -> ProjectSource:
    try:
        return _project_source(doc, data)
    except OSError as exc:  # e.g. a name longer than the filesystem allows
        raise ConfigError(
            f"{doc.where(('project',))}: project: cannot use this path: {exc.strerror}"
        ) from None


def _project_source(doc: Located, data: Mapping[str, Any]) -> ProjectSource:
    path = _project_path(doc, data)
    where = doc.where(("project",))
    if path.is_dir():
        if not any((path / f).is_file() for f in ("pyproject.toml", "setup.py")):
            raise ConfigError(f"{where}: project: {path} has no pyproject.toml or setup.py")
        return ProjectSource(path=path, kind="directory")
    pinned = data["project"].get("sha256", "") if isinstance(data["project"], dict) else ""
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise ConfigError(f"{where}: project: {path} is a file but not an sdist (.tar.gz)")
        _check_sdist_sha256(doc, path, pinned)
        return ProjectSource(path=path, kind="sdist")
    hint = f"; download it: {_download_hint(path)}" if pinned else ""
    raise ConfigError(f"{where}: project: {path} does not exist{hint}")


def _check_sdist_sha256(doc: Located, path: Path, pinned: str) -> None:
    """A pinned sdist is the one the recipe was written for, or nothing is built."""
    if not pinned:
        return
    got = sha256_file(path)
    if got != pinned:
        raise ConfigError(
            f"{doc.where(('project', 'sha256'))}: project.sha256: {path.name} has sha256 {got}, "
            f"the recipe pins {pinned}; download the pinned release again "
            f"({_download_hint(path)}) or update the pin if the change is intended"
        )


def _download_hint(path: Path) -> str:
    """pyyaml-6.0.4.tar.gz -> the pip command that fetches exactly that sdist."""
    stem = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
    name, _, version = stem.rpartition("-")
    return f"pip download --no-binary :all: --no-deps {name}=={version} -d {path.parent}"


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _repair(raw: Mapping[str, Any]) -> RepairOptions:
    return RepairOptions(
        plat=raw.get("plat"),
        exclude=tuple(raw.get("exclude", ())),
        enabled=raw.get("enabled", True),
        only_plat=raw.get("only-plat", False),
    )


_STOCK_MODES: dict[object, Literal["auto", "always", "never"]] = {
    "auto": "auto",
    True: "always",
    False: "never",
}


def _test(raw: Mapping[str, Any]) -> TestOptions:
    return TestOptions(
        requires=tuple(raw.get("requires", ())),
        command=str(raw.get("command", "")),
        imports=tuple(raw.get("imports", ())),
        coexist=tuple(raw.get("coexist", ())),
        verify_images=tuple(raw.get("verify-images", ())),
        stock_images=_STOCK_MODES[raw.get("stock-images", "auto")],
    )


def _audit(raw: Mapping[str, Any]) -> AuditOptions:
    return AuditOptions(
        allow_exports=tuple(raw.get("allow-exports", ())),
        downgrade=tuple((d["check"], d["severity"], d["reason"]) for d in raw.get("downgrade", ())),
    )


# --- dependencies -----------------------------------------------------------------------


def library_dirs(recipe_file: Path) -> list[Path]:
    """Where `use: NAME` looks: the project's own recipes/ first, then orch's library."""
    dirs = [recipe_file.parent / "recipes"]
    with contextlib.suppress(FileNotFoundError):
        dirs.append(data_dir("recipes"))
    return [d for d in dirs if d.is_dir()]


def _is_file(path: Path) -> bool:
    """False also for names the OS refuses (too long...): such a name names no file."""
    try:
        return path.is_file()
    except OSError:
        return False


def load_library_recipe(name: str, dirs: Iterable[Path]) -> tuple[Located, dict[str, Any]] | None:
    for d in dirs:
        file = d / f"{name}.yaml"
        if _is_file(file):
            doc = load_located(file.resolve())
            if not isinstance(doc.data, dict):
                raise ConfigError(f"{file}:1:1: a dependency recipe is a mapping")
            _validate(doc, "dependency")
            return doc, doc.data
    return None


def load_dependency_file(file: Path) -> DependencySpec:
    """A library recipe file (recipes/<name>.yaml) as the model, validated."""
    found = load_library_recipe(file.stem, [file.parent])
    if found is None:
        raise ConfigError(f"{file}: no such dependency recipe")
    doc, data = found
    return _dependency(data, doc, (), doc)


def _dependencies(doc: Located, entries: list[dict[str, Any]]) -> tuple[DependencySpec, ...]:
    dirs = library_dirs(doc.file)
    specs: list[DependencySpec] = []
    for i, entry in enumerate(entries):
        path: tuple[str | int, ...] = ("dependencies", i)
        base_doc, merged = doc, dict(entry)
        if "use" in entry:
            found = load_library_recipe(entry["use"], dirs)
            if found is None:
                known = _library_names(dirs)
                hint = difflib.get_close_matches(entry["use"], known, n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(
                    f"{doc.where((*path, 'use'))}: {format_path((*path, 'use'))}: no library recipe "
                    f"'{entry['use']}'{did}; known: {', '.join(known)}"
                )
            base_doc, base = found
            merged = _override(base, entry)
            # A source given in the override is the user's: its patches sit next to orch.yaml.
            base_doc = doc if "source" in entry else base_doc
        specs.append(_dependency(merged, base_doc, path, doc))
    _check_dag(doc, specs)
    return tuple(specs)


def _requires_fix(req: str, doc: Located, names: list[str]) -> str:
    """Suggest `- use: X` only for a library recipe that exists; else the nearest names."""
    library = _library_names(library_dirs(doc.file))
    if req in library:
        return f"add it: `- use: {req}`"
    hint = difflib.get_close_matches(req, names + library, n=1)
    did = f"did you mean '{hint[0]}'? " if hint else ""
    return f"{did}no library recipe is named '{req}' either (known: {', '.join(library) or 'none'})"


def _library_names(dirs: Iterable[Path]) -> list[str]:
    return sorted({p.stem for d in dirs for p in d.glob("*.yaml")})


def _override(base: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """`use: x` plus fields: top-level fields replace, `build` and `exports` merge per key."""
    out = dict(base)
    for key, value in entry.items():
        if key == "use":
            continue
        if key in ("build", "exports") and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _dependency(
    data: Mapping[str, Any], defined_in: Located, path: tuple[str | int, ...], recipe: Located
) -> DependencySpec:
    where = recipe.where(path)
    label = format_path(path)
    for field in ("name", "version", "source"):
        if field not in data:
            raise ConfigError(f"{where}: {label}: missing '{field}'")
    build = data.get("build", {})
    if "system" not in build:
        raise ConfigError(f"{where}: {label} ({data['name']}): missing 'build.system'")
    if build["system"] == "script" and not build.get("script"):
        raise ConfigError(
            f"{where}: {label} ({data['name']}): build.system is script but no build.script"
        )
    src = data["source"]
    urls = tuple(_as_list(src["url"]))
    patches = tuple((defined_in.file.parent / p).resolve() for p in src.get("patches", ()))
    for p in patches:
        if not _is_file(p):
            raise ConfigError(f"{where}: {label} ({data['name']}): patch {p} does not exist")
    exports = data.get("exports", {})
    return DependencySpec(
        name=str(data["name"]),
        version=_as_written(data["version"], recipe.text((*path, "version")), defined_in),
        source=SourceSpec(
            urls=urls,
            sha256=str(src["sha256"]),
            filename=str(src.get("filename") or urls[0].rstrip("/").rsplit("/", 1)[-1]),
            strip_components=int(src.get("strip-components", 1)),
            patches=patches,
        ),
        build_system=str(build["system"]),
        options=tuple(str(o) for o in build.get("options", ())),
        script=str(build.get("script", "")),
        env=tuple(sorted((str(k), str(v)) for k, v in build.get("env", {}).items())),
        requires=tuple(data.get("requires", ())),
        exports=Exports(
            libs=tuple(exports.get("libs", ())),
            pkg_config=tuple(exports.get("pkg-config", ())),
            cmake_packages=tuple(exports.get("cmake", ())),
        ),
        origin=defined_in.where(() if defined_in is not recipe else path),
        network=data.get("network", False) is True,
        unsupported=tuple(
            Unsupported(tuple(_as_list(u["not"])), str(u["reason"]))
            for u in data.get("supports", ())
        ),
    )


def _as_written(value: object, in_recipe: str | None, library: Located) -> str:
    """A version number as the file spells it (`1.10`, not `1.1`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return in_recipe or library.text(("version",)) or str(value)
    return str(value)


def _check_dag(doc: Located, specs: list[DependencySpec]) -> None:
    names = {s.name: i for i, s in enumerate(specs)}
    if len(names) != len(specs):
        seen: set[str] = set()
        for i, s in enumerate(specs):
            if s.name in seen:
                raise ConfigError(
                    f"{doc.where(('dependencies', i))}: dependencies[{i}]: '{s.name}' is listed twice"
                )
            seen.add(s.name)
    for i, s in enumerate(specs):
        for req in s.requires:
            if req not in names:
                raise ConfigError(
                    f"{doc.where(('dependencies', i))}: dependencies[{i}] ({s.name}) requires "
                    f"'{req}', which is not among the recipe's dependencies "
                    f"({', '.join(names) or 'none'}); {_requires_fix(req, doc, list(names))}"
                )
    from orchestrator.recipe.graph import CycleError, topological_order

    try:
        topological_order({s.name: s.requires for s in specs})
    except CycleError as exc:
        first = names[exc.cycle[0]]
        raise ConfigError(
            f"{doc.where(('dependencies', first))}: dependency cycle: {' -> '.join(exc.cycle)}"
        ) from None
