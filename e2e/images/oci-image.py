#!/usr/bin/env python3
"""Write a container image as an OCI archive, without a container engine.

    layers (directory trees or rootfs tars) --> gzip blobs --> config + manifest + index
        --> one tar: oci-layout, index.json, blobs/sha256/*, manifest.json

The archive loads with `ctr images import` (containerd, kind), `docker load` and `podman load`:
index.json names the image (`io.containerd.image.name`, `org.opencontainers.image.ref.name`)
and manifest.json carries the Docker-style RepoTags. Output is reproducible: entries are
sorted, owned by root, and stamped with SOURCE_DATE_EPOCH (default 0).

Usage:
  oci-image.py --name REPO:TAG --out IMAGE.tar --layer DIR_OR_TAR [--layer ...]
               [--entrypoint JSON] [--cmd JSON] [--user UID:GID] [--env K=V]...
               [--workdir DIR] [--label K=V]... [--expose PORT/PROTO]...
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def fail(message):
    print(f"oci-image: error: {message}", file=sys.stderr)
    sys.exit(1)


def epoch():
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not value.isdigit():
        fail(f"SOURCE_DATE_EPOCH must be a number of seconds, got {value!r}")
    return int(value)


def tar_directory(root, out, mtime):
    """Pack the tree under `root` as a root-owned layer (paths relative to `root`)."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                entries.append(os.path.join(dirpath, name))
        for path in sorted(entries, key=lambda p: os.path.relpath(p, root)):
            rel = os.path.relpath(path, root)
            info = tar.gettarinfo(path, arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def copy_tar(path, out, mtime):
    """Re-emit an existing rootfs tar (ownership kept, as a rootfs tar must), timestamps fixed."""
    with tarfile.open(path, mode="r:*") as src, tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT
    ) as dst:
        for info in src:
            if info.name in (".", "./"):
                continue
            # Pax records win over the header fields when tarfile writes them again, so drop the
            # ones rewritten here (tarfile adds path/linkpath back when a name needs them).
            for key in ("mtime", "atime", "ctime", "path", "linkpath"):
                info.pax_headers.pop(key, None)
            info.mtime = mtime
            info.name = strip_dot(info.name)
            if info.islnk():
                info.linkname = strip_dot(info.linkname)
            if info.isreg():
                dst.addfile(info, src.extractfile(info))
            else:
                dst.addfile(info)


def strip_dot(name):
    return name[2:] if name.startswith("./") else name


class Blobs:
    """Content-addressed blobs in a temporary directory."""

    def __init__(self, directory):
        self.directory = directory
        self.sizes = {}

    def add(self, data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.directory, digest), "wb") as f:
            f.write(data)
        self.sizes[digest] = len(data)
        return f"sha256:{digest}", len(data)

    def add_layer(self, source, mtime):
        """Returns (compressed descriptor, uncompressed diff id, uncompressed size)."""
        raw = tempfile.TemporaryFile(dir=self.directory)
        if os.path.isdir(source):
            tar_directory(source, raw, mtime)
        elif os.path.isfile(source):
            copy_tar(source, raw, mtime)
        else:
            fail(f"layer {source!r} is neither a directory nor a tar file")
        raw.seek(0)
        diff = hashlib.sha256()
        packed = tempfile.NamedTemporaryFile(dir=self.directory, delete=False)
        raw_size = 0
        with gzip.GzipFile(
            filename="", fileobj=packed, mode="wb", mtime=mtime, compresslevel=6
        ) as gz:
            while chunk := raw.read(1 << 20):
                diff.update(chunk)
                raw_size += len(chunk)
                gz.write(chunk)
        packed.close()
        raw.close()
        digest = hashlib.sha256()
        with open(packed.name, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        hexdigest = digest.hexdigest()
        os.replace(packed.name, os.path.join(self.directory, hexdigest))
        size = os.path.getsize(os.path.join(self.directory, hexdigest))
        self.sizes[hexdigest] = size
        descriptor = {"mediaType": MEDIA_LAYER, "digest": f"sha256:{hexdigest}", "size": size}
        return descriptor, f"sha256:{diff.hexdigest()}", raw_size


def key_values(pairs, what):
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{what} {pair!r} must be KEY=VALUE")
        result[key] = value
    return result


def json_list(value, what):
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        fail(f"{what} must be a JSON array of strings: {e}")
    if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
        fail(f"{what} must be a JSON array of strings, got {value!r}")
    return parsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="image reference REPO:TAG")
    parser.add_argument("--out", required=True, help="archive to write")
    parser.add_argument("--layer", action="append", required=True, help="directory or tar")
    parser.add_argument("--entrypoint")
    parser.add_argument("--cmd")
    parser.add_argument("--user")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--workdir")
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--expose", action="append", default=[])
    parser.add_argument("--arch", default="amd64")
    args = parser.parse_args()

    name = args.name
    last = name.rsplit("/", 1)[-1]
    if ":" not in last or "@" in name:
        fail(f"--name {name!r} must be REPO:TAG")
    mtime = epoch()
    created = "1970-01-01T00:00:00Z" if mtime == 0 else None
    if created is None:
        import datetime

        created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    labels = key_values(args.label, "--label")
    env = [f"{k}={v}" for k, v in key_values(args.env, "--env").items()]
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/bin:/usr/bin:/bin")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".oci-") as work:
        blobs = Blobs(work)
        layers, diff_ids, unpacked = [], [], 0
        for source in args.layer:
            descriptor, diff_id, raw_size = blobs.add_layer(source, mtime)
            layers.append(descriptor)
            diff_ids.append(diff_id)
            unpacked += raw_size
        config = {"Env": env, "Labels": labels}
        if (entrypoint := json_list(args.entrypoint, "--entrypoint")) is not None:
            config["Entrypoint"] = entrypoint
        if (cmd := json_list(args.cmd, "--cmd")) is not None:
            config["Cmd"] = cmd
        if args.user:
            config["User"] = args.user
        if args.workdir:
            config["WorkingDir"] = args.workdir
        if args.expose:
            config["ExposedPorts"] = {p: {} for p in args.expose}
        image_config = {
            "created": created,
            "architecture": args.arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": "oci-image.py"} for _ in layers],
        }
        config_digest, config_size = blobs.add(canonical(image_config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
            "annotations": labels,
        }
        manifest_digest, manifest_size = blobs.add(canonical(manifest))
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": args.arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                    },
                }
            ],
        }
        docker_manifest = [
            {
                "Config": blob_path(config_digest),
                "RepoTags": [name],
                "Layers": [blob_path(layer["digest"]) for layer in layers],
            }
        ]
        tmp_out = args.out + ".tmp"
        with tarfile.open(tmp_out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}), mtime)
            add_bytes(tar, "index.json", canonical(index), mtime)
            add_bytes(tar, "manifest.json", canonical(docker_manifest), mtime)
            for digest in sorted(blobs.sizes):
                info = tarfile.TarInfo(f"blobs/sha256/{digest}")
                info.size = blobs.sizes[digest]
                info.mtime = mtime
                info.mode = 0o644
                with open(os.path.join(work, digest), "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp_out, args.out)
    compressed = sum(layer["size"] for layer in layers)
    print(
        json.dumps(
            {
                "name": name,
                "archive": args.out,
                "manifest": manifest_digest,
                "compressed_bytes": compressed,
                "unpacked_bytes": unpacked,
            }
        )
    )


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def blob_path(digest):
    return "blobs/sha256/" + digest.split(":", 1)[1]


def add_bytes(tar, name, data, mtime):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
