"""The plan: the matrix of jobs a recipe asks for, each with its image, plus what was
excluded and why. Pure data (frozen dataclasses), computed without the engine, so it can
be printed, sharded across CI runners and compared between runs.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from orchestrator import archs
from orchestrator.errors import ConfigError
from orchestrator.images.sources import SourceChecks
from orchestrator.plan import catalog
from orchestrator.plan.runners import Runners
from orchestrator.recipe.graph import topological_order
from orchestrator.recipe.model import Recipe
from orchestrator.recipe.requires_python import (
    FreeThreading,
    RequiresPython,
    read_free_threading,
    read_requires_python,
)


@dataclass(frozen=True)
class Job:
    id: str  # cp311-manylinux_2_31_x86_64
    python: str  # "3.11"
    python_tag: str  # cp311-cp311: the /opt/python/<tag> directory
    policy: str  # PEP 600 name: manylinux_2_31
    platform_tag: str  # manylinux_2_31_x86_64: the tag the wheel is repaired to
    arch: str
    image: str
    image_source: str  # local | pypa | explicit
    runtime_image: str  # verifies the wheel in a fresh container: no compiler prefix, no source
    emulated: bool
    deps: tuple[str, ...] = ()  # dependency names, build order
    verify_images: tuple[str, ...] = ()  # every image the wheel is verified in, runtime first
    image_pythons: tuple[str, ...] = ()  # local images: the CPython versions the image carries
    engine: str = ""  # the engine that runs it ("": the local one; plan/engines.py)

    @property
    def group(self) -> str:
        """Jobs of one group share an image and architecture, hence their dependency builds."""
        return f"{self.image}|{self.arch}"


@dataclass(frozen=True)
class Excluded:
    """A combination the plan does not build, and why (in words a user can act on)."""

    id: str
    reason: str
    kind: str = "unavailable"  # unavailable: cannot be built | deselected: a selector left it out


DESELECTED = "deselected"


@dataclass(frozen=True)
class Plan:
    recipe: str
    jobs: tuple[Job, ...]
    excluded: tuple[Excluded, ...] = ()
    dep_order: tuple[str, ...] = field(default=())
    dep_network: tuple[str, ...] = ()  # dependencies whose build container has a network
    warnings: tuple[str, ...] = ()
    dep_requires: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (dependency, its requires)

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "jobs": [asdict(j) | {"group": j.group} for j in self.jobs],
            "excluded": [asdict(e) for e in self.excluded],
            "dependency_order": list(self.dep_order),
            "dependency_network": list(self.dep_network),
            "dependency_requires": {n: list(r) for n, r in self.dep_requires},
            "warnings": list(self.warnings),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @property
    def candidates(self) -> list[str]:
        """Every combination the recipe names, built or excluded: what selectors match."""
        return [j.id for j in self.jobs] + [e.id for e in self.excluded]

    def groups(self) -> list[tuple[str, tuple[Job, ...]]]:
        out: dict[str, list[Job]] = {}
        for job in self.jobs:
            out.setdefault(job.group, []).append(job)
        return [(g, tuple(js)) for g, js in out.items()]

    def select(self, only: Sequence[str] = (), flag: str = "--only") -> Plan:
        """Keep jobs whose id matches one of `only` (exact ids or globs; policy aliases
        such as manylinux2014 mean their PEP 600 name). A pattern matching no combination
        at all is an error; the jobs left out are recorded as excluded."""
        if not only:
            return self
        patterns = [normalize_selector(o) for o in only]
        for raw, pattern in zip(only, patterns, strict=True):
            if not any(fnmatch.fnmatchcase(c, pattern) for c in self.candidates):
                raise ConfigError(no_match_message(f"{flag} {raw}", raw, self.candidates))
        keep = tuple(j for j in self.jobs if _matches(j.id, patterns))
        reason = f"not selected by {flag} {' '.join(only)}"
        return self._keeping(keep, reason)

    def select_archs(self, wanted: Sequence[str]) -> Plan:
        """Keep the jobs of these architectures (--arch), each known and in the recipe."""
        if not wanted:
            return self
        in_recipe = sorted({arch_of(c) for c in self.candidates}, key=list(archs.ARCHS).index)
        for arch in wanted:
            if arch not in archs.ARCHS:
                raise ConfigError(unknown_arch_message(f"--arch {arch}", arch))
            if arch not in in_recipe:
                raise ConfigError(
                    f"--arch {arch}: the recipe does not build {arch}; its archs: "
                    f"{', '.join(in_recipe)} (add {arch} to archs: in {self.recipe})"
                )
        keep = tuple(j for j in self.jobs if j.arch in wanted)
        return self._keeping(keep, f"not selected by --arch {' '.join(wanted)}")

    def keep_ids(self, ids: set[str], reason: str) -> Plan:
        """Keep the jobs whose id is in `ids`; the others are excluded with `reason`."""
        return self._keeping(tuple(j for j in self.jobs if j.id in ids), reason)

    def _keeping(self, keep: tuple[Job, ...], reason: str) -> Plan:
        dropped = tuple(Excluded(j.id, reason, DESELECTED) for j in self.jobs if j not in keep)
        return replace(self, jobs=fit_local_images(keep), excluded=self.excluded + dropped)

    def shards(self, count: int, runners: Runners | None = None) -> list[tuple[Job, ...]]:
        """Split into at most `count` shards (at least one per runner), whole groups only (a
        runner builds a group's dependencies once), never mixing runners, balancing the
        estimated cost greedily: longest first."""
        runners = runners or Runners()
        by_runner: dict[str, list[tuple[Job, ...]]] = {}
        for _name, jobs in self.groups():
            by_runner.setdefault(runners.label(jobs[0].arch), []).append(jobs)
        if count < len(by_runner):  # fewer shards than runners: plain balance (`--shard 1/1`)
            every = [g for gs in by_runner.values() for g in gs]
            return _balance(sorted(every, key=lambda g: -_cost(g, runners)), count, runners)
        bins = dict.fromkeys(by_runner, 1)
        cost = {lab: sum(_cost(g, runners) for g in gs) for lab, gs in by_runner.items()}
        for _ in range(max(0, count - len(bins))):  # each spare shard to the busiest runner
            open_ = [lab for lab in bins if bins[lab] < len(by_runner[lab])]
            if not open_:
                break
            busiest = max(open_, key=lambda lab: (cost[lab] / bins[lab], lab))
            bins[busiest] += 1
        out: list[tuple[Job, ...]] = []
        for label in sorted(by_runner, key=lambda lab: (-cost[lab], lab)):
            groups = sorted(by_runner[label], key=lambda g: -_cost(g, runners))
            out.extend(_balance(groups, bins[label], runners))
        return out

    def shard(self, index: int, count: int, runners: Runners | None = None) -> Plan:
        """Shard `index` (1-based) of `count`: the same split `orch matrix` prints; the
        other shards' jobs become exclusions."""
        if count < 1 or not 1 <= index <= count:
            raise ConfigError(f"--shard {index}/{count}: expected K/N with 1 <= K <= N, e.g. 2/4")
        shards = self.shards(count, runners)
        jobs = shards[index - 1] if index <= len(shards) else ()
        reason = f"in another shard than {index}/{count}"
        if not jobs:
            reason = (
                f"shard {index}/{count} is empty: the plan has {len(shards)} image/arch "
                f"group(s), so only shards 1..{len(shards)} have jobs "
                f"(`orch matrix --max-shards {count}` makes only non-empty shards)"
            )
        return self._keeping(jobs, reason)

    def why_empty(self, selectors: Sequence[str] = (), limit: int = 20) -> str:
        """Why the selection leaves no job: each candidate's exclusion, then the buildable
        ids nearest to what was asked for."""
        lines = ["nothing to build: the selection leaves no job"]
        lines += [f"  {e.id}: {e.reason}" for e in self.excluded[:limit]]
        if len(self.excluded) > limit:
            lines.append(f"  ... and {len(self.excluded) - limit} more (orch plan --allow-empty)")
        if not self.excluded:
            lines.append("  the recipe names no combination")
        buildable = [e.id for e in self.excluded if e.kind == DESELECTED]
        near = [m for s in selectors for m in difflib.get_close_matches(s, buildable, n=3)]
        if buildable:
            shown = list(dict.fromkeys(near or buildable))[:6]
            lines.append(f"buildable ids nearest to the selection: {', '.join(shown)}")
        lines.append("pass --allow-empty to accept an empty selection (exit 0, nothing built)")
        return "\n".join(lines)


# --- selectors --------------------------------------------------------------------------

_ALIAS_IN_PATTERN = re.compile(r"manylinux(2014|2010|1)(?![0-9])")
_CIBW_ID = re.compile(r"^(?P<py>[^-]+)-(?P<libc>many|musl)linux_(?P<arch>[a-z0-9_*]+)$")


def normalize_selector(pattern: str) -> str:
    """Policy aliases as the ids spell them: '*-manylinux2014_*' -> '*-manylinux_2_17_*'."""
    return _ALIAS_IN_PATTERN.sub(lambda m: catalog.ALIASES[m.group(0)], pattern)


def _matches(job_id: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(job_id, p) for p in patterns)


def no_match_message(label: str, pattern: str, candidates: Sequence[str]) -> str:
    """'<label>: matches no job', with the nearest ids and what orch ids look like."""
    msg = f"{label}: '{pattern}' matches no job"
    near = difflib.get_close_matches(pattern, list(dict.fromkeys(candidates)), n=3, cutoff=0.5)
    if near:
        msg += f" (did you mean {' or '.join(near)}?)"
    normalized = normalize_selector(pattern)
    if normalized != pattern:
        msg += f" ('{pattern}' reads as '{normalized}': ids spell policies the PEP 600 way)"
    msg += "; " + (cibuildwheel_hint(pattern) or _python_hint(pattern, candidates) or "")
    return msg + _id_shape(candidates)


def _python_hint(pattern: str, candidates: Sequence[str]) -> str | None:
    """cp312-*: say that 3.12 is not among the recipe's Python versions."""
    m = re.match(r"cp3(\d+)\b", pattern)
    tags = sorted({c.split("-", 1)[0] for c in candidates})
    if not m or f"cp3{m.group(1)}" in tags:
        return None
    return f"cp3{m.group(1)} is CPython 3.{m.group(1)}, which python: does not list; "


def cibuildwheel_hint(pattern: str) -> str | None:
    """cibuildwheel's ids (cp311-manylinux_x86_64) name no policy; orch's do."""
    m = _CIBW_ID.match(pattern)
    if not m or m.group("arch") not in (*archs.ARCHS, "*"):
        return None
    family = f"{m.group('libc')}linux"
    return (
        f"this looks like a cibuildwheel identifier; orch's ids name the policy "
        f"({m.group('py')}-{family}_2_31_{m.group('arch')}, {m.group('py')}-{family}_2_17_"
        f"{m.group('arch')}): write {m.group('py')}-{family}_*_{m.group('arch')} for any "
        f"{family} policy; "
    )


def _id_shape(candidates: Sequence[str]) -> str:
    shown = ", ".join(list(dict.fromkeys(candidates))[:6]) or "none"
    more = ", ..." if len(set(candidates)) > 6 else ""
    return f"this recipe's ids: {shown}{more}"


def unknown_arch_message(label: str, arch: str) -> str:
    if "," in arch:
        return (
            f"{label}: one architecture per --arch (repeat the flag: --arch x86_64 --arch aarch64)"
        )
    return f"{label}: {archs.not_an_arch(arch)}"


def arch_of(job_id: str) -> str:
    for name in sorted(archs.ARCHS, key=len, reverse=True):
        if job_id.endswith("_" + name):
            return name
    return "?"


def _balance(
    groups: Sequence[tuple[Job, ...]], count: int, runners: Runners
) -> list[tuple[Job, ...]]:
    """Groups (longest first) into at most `count` bins, each to the cheapest bin so far."""
    bins: list[list[Job]] = [[] for _ in range(max(1, min(count, len(groups))))]
    for jobs in groups:
        target = min(bins, key=lambda b: _cost(b, runners))
        target.extend(jobs)
    return [tuple(b) for b in bins if b]


def _job_cost(job: Job, runners: Runners) -> float:
    # Emulated jobs take ~20x longer here; measured ratios are what matter for balance.
    return 20.0 if runners.emulated(job.arch) else 1.0


def _cost(jobs: Iterable[Job], runners: Runners) -> float:
    return sum(_job_cost(j, runners) for j in jobs)


def python_tag(version: str) -> str:
    """'3.11' -> cp311-cp311, '3.13t' (free-threaded) -> cp313-cp313t, '3.7' -> cp37-cp37m."""
    free = version.endswith("t")
    major, minor = version.removesuffix("t").split(".")
    tag = f"cp{major}{minor}"
    abi = "m" if (int(major), int(minor)) < (3, 8) else "t" if free else ""
    return f"{tag}-{tag}{abi}"


def job_prefix(version: str) -> str:
    """The job id's Python part, as cibuildwheel spells it: cp311, cp313t."""
    return python_tag(version).split("-")[0] + ("t" if version.endswith("t") else "")


def fit_local_images(jobs: tuple[Job, ...]) -> tuple[Job, ...]:
    """Each local image carries exactly the Pythons its jobs use (interpreters are built on
    demand, so an image with more would compile interpreters nobody asked for)."""
    cat = catalog.load()
    wanted: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        if job.image_source == "local":
            wanted.setdefault((job.policy, job.arch), []).append(job.python)
    fitted = []
    for job in jobs:
        if job.image_source == "local":
            image = cat.choose(job.policy, job.arch, "local", tuple(wanted[job.policy, job.arch]))
            others = [v for v in job.verify_images if v != job.runtime_image]
            job = replace(
                job,
                image=image.ref,
                runtime_image=image.runtime_ref,
                verify_images=tuple(dict.fromkeys((image.runtime_ref, *others))),
                image_pythons=image.pythons,
            )
        fitted.append(job)
    return tuple(fitted)


def make_plan(
    recipe: Recipe, host_arch: str | None = None, sources: SourceChecks | None = None
) -> Plan:
    """Every (policy, arch, python) combination: a job, or an exclusion with its reason.
    Selectors (build, skip) that match no combination at all are errors. `sources` says
    whether the mirror serves a source-built interpreter's source (images/sources.py);
    without it every one the image definitions list is planned."""
    cat = catalog.load()
    notes: dict[str, None] = {}  # failed or skipped source checks, in order
    host = host_arch or archs.host_arch()
    dep_order = tuple(topological_order({d.name: d.requires for d in recipe.dependencies}))
    requires = read_requires_python(recipe.project)
    free = read_free_threading(recipe.project)
    jobs: list[Job] = []
    excluded: list[Excluded] = []
    planned = [cat.canonical(p) for p in recipe.platforms]
    for policy in recipe.platforms:
        pep600 = cat.canonical(policy)
        for arch in recipe.archs:
            tag = f"{pep600}_{arch}"
            try:
                image = cat.choose(pep600, arch, recipe.images.get(policy))
            except catalog.NoImage as exc:
                excluded += [Excluded(_job_id(py, tag), exc.reason) for py in recipe.python]
                continue
            for py in recipe.python:
                if requires is not None and not requires.allows(py):
                    excluded.append(Excluded(_job_id(py, tag), _outside(requires)))
                    continue
                if _unsupported_free_threaded(py, free):
                    assert free is not None
                    excluded.append(Excluded(_job_id(py, tag), free.reason(py)))
                    continue
                if py not in image.pythons:
                    has = ", ".join(image.pythons)
                    reason = f"{_image_name(image, tag)} has no CPython {py} (has {has})"
                    if image.source == "local":
                        reason += cat.missing_python(pep600, arch, py, planned)
                    excluded.append(Excluded(_job_id(py, tag), reason))
                    continue
                unserved = _unserved(cat, image, pep600, arch, py, (planned, sources), notes)
                if unserved:
                    excluded.append(Excluded(_job_id(py, tag), unserved))
                    continue
                unsupported = _unsupported_by(recipe, tag)
                if unsupported:
                    excluded.append(Excluded(_job_id(py, tag), unsupported))
                    continue
                verify = tuple(dict.fromkeys((image.runtime_ref, *recipe.test.verify_images)))
                job = Job(
                    id=_job_id(py, tag),
                    python=py,
                    python_tag=python_tag(py),
                    policy=pep600,
                    platform_tag=(recipe.repair.plat or tag).replace("{arch}", arch),
                    arch=arch,
                    image=image.ref,
                    image_source=image.source,
                    runtime_image=image.runtime_ref,
                    emulated=not archs.runs_natively(arch, host),
                    deps=dep_order,
                    verify_images=verify,
                )
                jobs.append(job)
    online = tuple(d.name for d in recipe.dependencies if d.network)
    warnings = _requires_python_warnings(recipe, requires) + _free_threaded_warnings(recipe, free)
    warnings += tuple(notes)
    dag = tuple((d.name, tuple(d.requires)) for d in recipe.dependencies)
    plan = Plan(str(recipe.path), tuple(jobs), tuple(excluded), dep_order, online, warnings, dag)
    return _apply_selectors(plan, recipe)


def _unserved(
    cat: catalog.Catalog,
    image: catalog.ImageChoice,
    pep600: str,
    arch: str,
    python: str,
    asked: tuple[Sequence[str], SourceChecks | None],
    notes: dict[str, None],
) -> str | None:
    """Why a local image cannot compile `python` (its source is not served), with the
    family that has it; a failed or skipped check plans the job and leaves a note."""
    planned, sources = asked
    if image.source != "local":
        return None
    check = cat.local[pep600].source_check(python, sources)
    if check is None or check.state == "served":
        return None
    if not check.excludes:
        notes[check.note()] = None
        return None
    return check.reason() + cat.missing_python(pep600, arch, python, planned, sources)


def _unsupported_by(recipe: Recipe, tag: str) -> str | None:
    """Why a dependency's `supports` rules out the platform tag, or None. Every dependency
    the recipe builds is listed (requirements included), so a dependent is excluded too."""
    for dep in recipe.dependencies:
        for rule in dep.unsupported:
            if any(fnmatch.fnmatchcase(tag, normalize_selector(p)) for p in rule.patterns):
                where = f" ({dep.origin})" if dep.origin else ""
                return f"dependency {dep.name} does not build for {tag}: {rule.reason}{where}"
    return None


def _image_name(image: catalog.ImageChoice, plat: str) -> str:
    # A local image's tag names the Pythons it carries: name the family, not one set.
    return f"the local {plat} image" if image.source == "local" else image.ref


def _outside(requires: RequiresPython) -> str:
    return f"outside the project's requires-python {requires.text} (from {requires.origin})"


def _requires_python_warnings(recipe: Recipe, requires: RequiresPython | None) -> tuple[str, ...]:
    """A version the recipe names explicitly but the project refuses is worth a word: the
    recipe asked for it, and the plan silently dropping it would look like a bug."""
    origin = recipe.origins.get("python")  # only when the recipe lists versions itself
    if requires is None or origin is None:
        return ()
    outside = [py for py in recipe.python if not requires.allows(py)]
    if not outside:
        return ()
    return (
        f"{origin}: python lists {', '.join(outside)}, "
        f"{_outside(requires)}: not built; remove {'them' if len(outside) > 1 else 'it'} "
        "from `python:`",
    )


def _unsupported_free_threaded(python: str, free: FreeThreading | None) -> bool:
    return python.endswith("t") and free is not None and not free.declared


def _free_threaded_warnings(recipe: Recipe, free: FreeThreading | None) -> tuple[str, ...]:
    origin = recipe.origins.get("python")
    listed = [py for py in recipe.python if _unsupported_free_threaded(py, free)]
    if origin is None or not listed or free is None:
        return ()
    return (
        f"{origin}: python lists {', '.join(listed)}, but the project does not declare "
        f"free-threading support {free.why_not()}: not built; remove "
        f"{'them' if len(listed) > 1 else 'it'} from `python:`, or ask the project to "
        "support and declare it",
    )


def _job_id(python: str, platform_tag: str) -> str:
    return f"{job_prefix(python)}-{platform_tag}"


def _apply_selectors(plan: Plan, recipe: Recipe) -> Plan:
    """build/skip: each pattern must match some combination; the rest are exclusions."""
    build = [normalize_selector(b) for b in recipe.build_selectors]
    skip = [normalize_selector(s) for s in recipe.skip_selectors]
    for name, raws, pats in (
        ("build", recipe.build_selectors, build),
        ("skip", recipe.skip_selectors, skip),
    ):
        for i, (raw, pat) in enumerate(zip(raws, pats, strict=True)):
            if not any(fnmatch.fnmatchcase(c, pat) for c in plan.candidates):
                label = f"{recipe.origin(name, i)}: {name}"
                raise ConfigError(no_match_message(label, raw, plan.candidates))
    keep: list[Job] = []
    dropped: list[Excluded] = []
    for job in plan.jobs:
        if not _matches(job.id, build):
            reason = f"not matched by build: {', '.join(recipe.build_selectors)}"
            dropped.append(Excluded(job.id, reason, DESELECTED))
        elif _matches(job.id, skip):
            hit = next(
                r
                for r, p in zip(recipe.skip_selectors, skip, strict=True)
                if fnmatch.fnmatchcase(job.id, p)
            )
            dropped.append(Excluded(job.id, f"skipped by skip: {hit}", DESELECTED))
        else:
            keep.append(job)
    jobs = fit_local_images(tuple(keep))
    return replace(plan, jobs=jobs, excluded=plan.excluded + tuple(dropped))
