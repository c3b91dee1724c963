"""`orch images build-local`: manylinux-compatible images built on this host.

For one architecture and Debian suite there are two images, tagged by the hash of their
definition (see `definition.py`):

- ``orch-local/<policy>_<arch>-runtime:<hash12>``: interpreters only, in the manylinux
  layout ``/opt/python/<tag>/bin/python``; for installing and testing wheels.
- ``orch-local/<policy>_<arch>:<hash12>``: the runtime plus compilers, build systems,
  Python headers, ``build`` in every interpreter and auditwheel/patchelf on PATH.

A wheel repaired by auditwheel in these images is manylinux_<glibc> because nothing in them
is newer than the suite's glibc. Present tags are reused as they are; a changed definition
gives a new tag, so "rebuild when the definition changes" needs no bookkeeping.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from orchestrator import options
from orchestrator.container import engine
from orchestrator.errors import OrchError
from orchestrator.images import definition, rootfs
from orchestrator.images.definition import ImagePlan

# Debian suite -> (auditwheel policy, glibc). Each must exist in auditwheel's policy list
# (checked by the tests) and have an images/local/<suite>.yaml.
LOCAL_POLICY_BY_SUITE: dict[str, tuple[str, str]] = {
    "bullseye": ("manylinux_2_31", "2.31"),
    "bookworm": ("manylinux_2_36", "2.36"),
}
DEFAULT_SUITE = "bullseye"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

Log = Callable[[str], None]

# Roots debootstrapped afresh by this process (see `rebuild`).
_refreshed_rootfs: set[str] = set()


def _quiet(_line: str) -> None:
    pass


def local_image_ref(
    arch: str, variant: str, suite: str = DEFAULT_SUITE, pythons: tuple[str, ...] | None = None
) -> str:
    """The tag the image would have (computed from the definition files; no Docker)."""
    return definition.plan_image(arch, suite, pythons).ref(variant)


def ensure_local_image(
    arch: str,
    variant: str = "build",
    suite: str = DEFAULT_SUITE,
    pythons: tuple[str, ...] | None = None,
    on_line: Log | None = None,
    rebuild: bool = False,
) -> engine.ImageInfo:
    """The image for (arch, variant, suite), built only when its tag is absent.

    ``rebuild`` builds even when the tag exists, from a fresh debootstrap (once per process
    and root, so rebuilding runtime then build debootstraps once) to pick up Debian updates.
    The tag stays the same, since the definition did not change.
    """
    plan = definition.plan_image(arch, suite, pythons)
    fresh = rebuild and plan.rootfs_key not in _refreshed_rootfs
    info = _ensure(plan, variant, on_line or _quiet, force=rebuild, fresh_rootfs=fresh)
    if fresh:
        _refreshed_rootfs.add(plan.rootfs_key)
    return info


def stale_local_images() -> list[str]:
    """Tags of local images whose definition has changed since they were built."""
    stale = []
    for info in engine.list_images("io.orch.image=local"):
        labels = info.labels
        try:
            current = local_image_ref(
                labels["io.orch.arch"],
                labels["io.orch.variant"],
                labels.get("io.orch.suite", DEFAULT_SUITE),
                tuple(labels["io.orch.pythons"].split(",")),
            )
        except (KeyError, OrchError):  # unreadable labels or a suite no longer defined
            current = ""
        if info.ref != current:
            stale.append(info.ref)
    return sorted(stale)


def remove_stale_local_images(on_line: Log | None = None) -> list[str]:
    removed = stale_local_images()
    for ref in removed:
        (on_line or _quiet)(f"[orch] removing stale local image {ref}")
        engine.remove_image(ref)
    return removed


def _ensure(
    plan: ImagePlan, variant: str, log: Log, force: bool, fresh_rootfs: bool
) -> engine.ImageInfo:
    ref = plan.ref(variant)
    engine.ping()  # an unreachable engine is reported before any slow work
    if not force:
        info = engine.inspect_image(ref)
        if info is not None:
            return info
    rootfs.check_binfmt(plan.arch)
    lock = rootfs.cache_dir() / "images" / "locks" / f"{plan.plat}-{plan.tag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if not force:
            info = engine.inspect_image(ref)  # built by another process while we waited
            if info is not None:
                return info
        return _build(plan, variant, log, fresh_rootfs)


def _build(plan: ImagePlan, variant: str, log: Log, fresh_rootfs: bool) -> engine.ImageInfo:
    ref = plan.ref(variant)
    tarball = rootfs.ensure_rootfs(
        plan.defn.suite, plan.arch, plan.rootfs_key, log, refresh=fresh_rootfs
    )
    start = time.monotonic()
    log(f"[orch] building {ref} ({plan.arch.platform}, pythons {', '.join(plan.pythons)})")
    with tempfile.TemporaryDirectory(prefix="orch-image-") as tmp:
        context = _make_context(Path(tmp), plan, tarball)
        info = engine.build_image(
            context,
            tag=ref,
            platform=plan.arch.platform,
            buildargs={**plan.buildargs, **_proxy_args()},
            labels=plan.labels(variant),
            target=variant,
            on_line=log,
        )
    _check_built(plan, info)
    log(f"[orch] built {ref} in {time.monotonic() - start:.1f} s")
    return info


def _make_context(tmp: Path, plan: ImagePlan, tarball: Path) -> Path:
    """Dockerfile + scripts + rootfs.tar.gz + host-ca.crt (empty when the host has none)."""
    base = definition.definition_dir()
    for src in definition.definition_files(plan.defn):
        dst = tmp / src.relative_to(base)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    try:
        os.link(tarball, tmp / "rootfs.tar.gz")  # the tarball is big: no copy when possible
    except OSError:
        shutil.copy2(tarball, tmp / "rootfs.tar.gz")
    ca = tmp / "host-ca.crt"
    bundle = Path(options.env().ssl_cert_file or HOST_CA_BUNDLE)
    if bundle.is_file():
        shutil.copyfile(bundle, ca)
    else:
        ca.write_bytes(b"")
    return tmp


def _proxy_args() -> dict[str, str]:
    """The host's proxy settings, passed to the build (Docker does not record them)."""
    return dict(options.env().proxies)


def _check_built(plan: ImagePlan, info: engine.ImageInfo) -> None:
    want = plan.arch.oci.split("/")[0]
    if info.architecture != want:
        raise OrchError(
            f"{info.ref} was built as {info.architecture or 'unknown'}, not {want}: "
            "the engine ignored --platform (needs Docker >= 20.10)"
        )
