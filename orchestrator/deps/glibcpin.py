"""Older glibc symbol versions for images whose glibc is newer than their policy.

The forky family builds on glibc 2.43 for the manylinux_2_39 policy (auditwheel 6.4.2
knows none newer). glibc gives some functions a new default version while keeping the
old one (x86_64's `sqrtf@@GLIBC_2.43`, the old `sqrtf@GLIBC_2.2.5`): any code that calls
them links the new version and its wheel cannot be repaired to the policy, although the
function exists on every system the policy covers. Building on an old glibc would link
the old version; here a header forced into every compile (`-include`) binds each such
function to its newest version within the policy with `.symver`, which is what linking
on that old glibc gives. Functions that only exist in a newer glibc have no older version
and still fail the repair, as they must.

The header is made in the build container from the libc and libm the compiler links
(readelf reads any architecture's ELF, so it also runs under an emulated image's native
tools; an accelerated container also holds the host's libraries, which must not count).
"""

from __future__ import annotations

from orchestrator.plan import catalog

HEADER = "/orch/glibc-pin.h"
FLAG = f"-include {HEADER}"
LIBS = ("libc.so.6", "libm.so.6")
# Only functions whose newer version kept the prototype and the result: glibc 2.43 gave
# these float (and two double) functions new versions when it dropped their SVID error
# wrappers (as 2.27 did for expf, logf, powf ...); the old ones behave the same in the
# default POSIX mode. Not the C23 fromfp/ufromfp family (its return type changed) nor the
# termios cf*speed functions of 2.42 (arbitrary baud rates): an old version there is not
# the same function, so a wheel that needs them still fails its repair.
SAME_FUNCTION = (
    "acosf", "acoshf", "asinf", "atan2f", "atanhf", "coshf", "j0f", "j1f", "jnf",
    "lgammaf", "lgammaf_r", "log10f", "remainder", "remainderf", "sinhf", "sqrtf",
    "tgammaf", "y0f", "y1f", "ynf",
)  # fmt: skip


def ceiling(policy: str, image_source: str) -> str:
    """The policy's glibc ("2.39") when the job's local image has a newer one, else ""."""
    if catalog.newer_local_glibc(policy, image_source) is None:
        return ""
    return ".".join(policy.split("_")[1:])


_AWK = r"""
function newer(a, b,   x, y, i) {
  split(a, x, "."); split(b, y, ".")
  for (i = 1; i <= 3; i++) if ((x[i] + 0) != (y[i] + 0)) return (x[i] + 0) > (y[i] + 0)
  return 0
}
$4 ~ /FUNC/ && $7 != "UND" && $8 ~ /@@?GLIBC_[0-9]/ {
  name = $8; sub(/@.*/, "", name)
  if (name !~ allow) next
  ver = $8; sub(/^[^@]*@@?GLIBC_/, "", ver)
  if ($8 ~ /@@/) dflt[name] = ver
  else if (!newer(ver, ceil) && (!(name in best) || newer(ver, best[name]))) best[name] = ver
}
END {
  for (n in dflt)
    if (newer(dflt[n], ceil) && (n in best))
      printf "__asm__(\".symver %s,%s@GLIBC_%s\");\n", n, n, best[n]
}
"""


def script(limit: str) -> str:
    """Bash writing HEADER: a `.symver` line per SAME_FUNCTION of the image's libc/libm
    whose default version is newer than `limit` and which has a version within it."""
    # The compiler's own libc/libm: an accelerated container also has the host's.
    libs = "$(for l in " + " ".join(LIBS) + '; do "${CC:-cc}" -print-file-name=$l; done)'
    allow = "^(" + "|".join(SAME_FUNCTION) + ")$"
    return "\n".join(
        [
            "set -euo pipefail",
            f"libs={libs}",
            "ls $libs >/dev/null  # a bare name: the compiler did not find it",
            'echo "glibc pin: reading" $libs',
            f"body=$(readelf --dyn-syms -W $libs | awk -v ceil={limit} -v 'allow={allow}' "
            f"'{_AWK}' | sort)",
            "{",
            f"  echo '/* orch: glibc functions bound to their newest version <= {limit} */'",
            "  echo '#ifndef __ASSEMBLER__'",
            '  [ -z "$body" ] || printf "%s\\n" "$body"',
            "  echo '#endif'",
            f"}} > {HEADER}",
            f'echo "glibc pin: $(grep -c symver {HEADER} || true) function(s) bound to their '
            f'version <= {limit}: $(grep -o "symver [^,]*" {HEADER} | cut -d" " -f2 | '
            f'tr "\\n" " ")"',
        ]
    )
