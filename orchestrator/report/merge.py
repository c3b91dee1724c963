"""Merging the reports of a sharded run (one per CI runner) into one report.

Jobs, dependency builds, images and exclusions are concatenated. The same job can appear
twice when a shard was re-run, or its report was merged twice; then one result is kept:

- a result with a wheel (status ok) beats one without: that wheel is in the wheelhouse;
- otherwise the later run's result wins (the re-run is the current truth).

Every such choice is listed under ``duplicates`` so nothing disappears silently. The
merged report is itself a report: it can be rendered, or merged again.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.report.common import number
from orchestrator.report.record import REPORT_SCHEMA

Item = dict[str, Any]


def merge(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report from shard reports (in any order; their times decide what is newer)."""
    if not reports:
        raise ConfigError("no reports to merge")
    names = sorted({str(r.get("name", "")) for r in reports})
    if len(names) > 1:
        raise ConfigError(
            f"reports are of different projects ({', '.join(names)}); merge one at a time"
        )
    ordered = sorted(reports, key=_run_time)  # oldest first: later ones override
    sources = [s for r in ordered for s in _sources(r)]
    jobs, duplicates = _merge_jobs(ordered)
    return {
        "schema": REPORT_SCHEMA,
        "orch_version": _joined(r.get("orch_version") for r in ordered),
        "recipe": ordered[-1].get("recipe", ""),
        "name": names[0],
        "started": _extreme((r.get("started") for r in ordered), min),
        "finished": _extreme((r.get("finished") for r in ordered), max),
        "host": {
            "machine": _joined(s["machine"] for s in sources),
            "node": _joined(s["node"] for s in sources),
        },
        "shard": None,
        "run_id": "merged-" + _digest(s["run_id"] for s in sources),
        "shards": [s["run_id"] for s in sources],
        "merged_from": sources,
        "duplicates": duplicates,
        "jobs": jobs,
        "deps": _dedupe(
            ordered, "deps", _dep_key, lambda d: d.get("status") in ("built", "cached")
        ),
        "images": _dedupe(
            ordered,
            "images",
            _image_key,
            lambda i: i.get("status") in ("present", "built", "pulled"),
        ),
        "excluded": _dedupe(ordered, "excluded", lambda e: e.get("id"), lambda _e: False),
    }


def _run_time(report: Mapping[str, Any]) -> float:
    return number(report.get("finished")) or number(report.get("started")) or 0.0


def _sources(report: Mapping[str, Any]) -> list[Item]:
    """Who contributed: a plain report is one source; a merged one brings its own list."""
    if report.get("merged_from"):
        return [dict(s) for s in report["merged_from"]]
    host = report.get("host") or {}
    return [
        {
            "run_id": str(
                report.get("run_id") or f"unnamed-{_digest([repr(report.get('started'))])}"
            ),
            "shard": report.get("shard"),
            "machine": str(host.get("machine", "")),
            "node": str(host.get("node", "")),
            "started": report.get("started"),
            "finished": report.get("finished"),
            "jobs": len(report.get("jobs") or []),
        }
    ]


def _merge_jobs(ordered: Sequence[Mapping[str, Any]]) -> tuple[list[Item], list[Item]]:
    kept: dict[str, Item] = {}
    duplicates: list[Item] = [dict(d) for r in ordered for d in r.get("duplicates") or []]
    for report in ordered:
        for raw in report.get("jobs") or []:
            job = _tagged(raw, report)
            old = kept.get(job["id"])
            if old is None:
                kept[job["id"]] = job
                continue
            winner, loser, reason = _choose(old, job)
            kept[job["id"]] = winner  # dicts keep the first position of the key
            duplicates.append(
                {
                    "id": job["id"],
                    "kept": _brief(winner),
                    "dropped": _brief(loser),
                    "reason": reason,
                }
            )
    return list(kept.values()), duplicates


def _tagged(job: Mapping[str, Any], report: Mapping[str, Any]) -> Item:
    """A copy of the job that remembers which run (and shard) produced it."""
    out = copy.deepcopy(dict(job))
    out.setdefault("run_id", report.get("run_id"))
    out.setdefault("shard", report.get("shard"))
    return out


def _choose(old: Item, new: Item) -> tuple[Item, Item, str]:
    old_ok, new_ok = old.get("status") == "ok", new.get("status") == "ok"
    if old_ok and not new_ok:
        return old, new, "an ok result (with its wheel) beats a later one without"
    if new_ok and not old_ok:
        return new, old, "an ok result (with its wheel) beats an earlier one without"
    return new, old, "the later run wins"


def _brief(job: Mapping[str, Any]) -> Item:
    return {"run_id": job.get("run_id"), "shard": job.get("shard"), "status": job.get("status")}


def _dedupe(
    ordered: Sequence[Mapping[str, Any]],
    field: str,
    key: Callable[[Mapping[str, Any]], Hashable],
    good: Callable[[Mapping[str, Any]], bool],
) -> list[Item]:
    """Concatenate one list field; a repeated key keeps a good entry over a bad one, else
    the later one."""
    out: dict[Hashable, Item] = {}
    for report in ordered:
        for item in report.get(field) or []:
            k = key(item)
            if k not in out or good(item) or not good(out[k]):
                out[k] = copy.deepcopy(dict(item))
    return list(out.values())


def _dep_key(dep: Mapping[str, Any]) -> Hashable:
    return (dep.get("name"), dep.get("arch"), dep.get("group"), dep.get("key"))


def _image_key(image: Mapping[str, Any]) -> Hashable:
    return (image.get("ref"), image.get("arch"))


def _extreme(values: Iterable[Any], pick: Callable[[list[float]], float]) -> float | None:
    numbers = [n for n in map(number, values) if n is not None]
    return pick(numbers) if numbers else None


def _joined(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values if v}))


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:12]
