"""Run by the verification container's own interpreter (stdlib only, any Python 3.11+):
fetch the wheels a pylock.toml pins into a directory, checking each file's sha256.

The native uv resolved the pylock for this interpreter (its markers, its tags), so a
package with exactly one wheel listed has the one wheel pip would pick. Anything else
(no wheel: an sdist to build; several wheels; no hash) is printed as `name==version`
on stdout for the emulated pip to handle, as it handled everything before.
Exit 3: this Python cannot read TOML (no tomllib); exit 4: a requirement not from an
index (URL, VCS, directory). Either way the caller falls back to pip for everything.
"""

import hashlib
import os
import sys
import time
import urllib.request


def main(pylock: str, dest: str) -> int:
    if sys.version_info < (3, 11):
        return 3
    import tomllib  # type: ignore[import-not-found,unused-ignore]  # 3.11+: checked above

    with open(pylock, "rb") as f:
        packages = tomllib.load(f).get("packages", [])
    fetches, rest = [], []
    for pkg in packages:  # classified first: a fallback starts from an empty directory
        if "path" in pkg.get("archive", {}):  # the job's own wheel: not fetched
            continue
        wheels = pkg.get("wheels") or []
        url = wheels[0].get("url", "") if len(wheels) == 1 else ""
        digest = wheels[0].get("hashes", {}).get("sha256", "") if url else ""
        if digest and url.endswith(".whl"):
            fetches.append((url, digest))
        elif "sdist" in pkg or wheels:  # from the index: pip picks or builds it, pinned
            rest.append(f"{pkg['name']}=={pkg['version']}")
        else:  # a URL, VCS or directory requirement: the caller's pip does it all
            return 4
    for url, digest in fetches:
        fetch(url, digest, dest)
    for line in rest:
        print(line)
    return 0


def fetch(url: str, digest: str, dest: str) -> None:
    name = url.rsplit("/", 1)[1].split("#", 1)[0]
    target = os.path.join(dest, urllib.request.url2pathname(name))
    part = target + ".part"
    sha = hashlib.sha256()
    for attempt in range(5):  # as pip retries: a name lookup fails now and then
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
                while chunk := resp.read(1 << 20):
                    sha.update(chunk)
                    out.write(chunk)
            break
        except OSError as exc:
            if attempt == 4:
                sys.exit(f"cannot fetch {name}: {exc}")
            sha = hashlib.sha256()
            time.sleep(1 + attempt)
    if sha.hexdigest() != digest:
        os.unlink(part)
        sys.exit(f"sha256 mismatch for {name}: got {sha.hexdigest()}, pylock says {digest}")
    os.replace(part, target)  # a reader never sees half a wheel
    print(f"fetched {name}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
