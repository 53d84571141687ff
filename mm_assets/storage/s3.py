"""`S3Store`: the artifact store on S3 or an S3-compatible server (SeaweedFS, MinIO), through s3fs.

- Keys are objects under `s3://bucket/prefix/`; `url(key)` is that URL (DuckDB reads it through the store's
  fsspec filesystem, megatron-core through its own boto3 client).
- `local_path`/`local_dir` give verified copies in the scratch folder (mirror.py): a stale or corrupt copy is
  downloaded again, never used.
- `publish` builds in the scratch folder, then uploads every file, the marker (`last`: the shard manifest, the
  metadata file, item.json) last. Object storage has no rename: a reader that checks the marker sees the old
  artifact, then (while the upload runs) none, then the new one whole. An error while building uploads nothing.
  One writer per key on this machine (a lock in the scratch folder).
- `working_dir` keeps a folder a job updates in place (a run's checkpoints and logs) under the scratch folder:
  synced down before (the store's copy wins over a local one it does not match), and its changes synced up
  after, the commit files (tracker, checkpoint hashes) last; removed files are deleted from the store.
- Any failure to reach the store is a StorageAccessError naming the endpoint, the bucket and what to check;
  the first use of a store probes the bucket, so a wrong secret fails there.
"""

from __future__ import annotations

import errno
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.mirror import Mirror, Remote, digests
from mm_assets.storage.paths import UnsafePathError, exclusive, remove_path, safe_join
from mm_assets.storage.s3_access import S3Access, StorageAccessError, access_problem, is_s3_url, split_s3_url
from mm_assets.storage.store import ArtifactStore, key_parts

CONNECT = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}}


def _glob_regex(pattern: str) -> re.Pattern:
    """A key glob as LocalStore's Path.glob reads it: `*` within one path part, no `**`."""
    if "**" in pattern or any(c in pattern for c in "?["):
        raise UnsafePathError(f"{pattern!r}: only '*' within a path part is supported in a store glob")
    return re.compile("".join("[^/]*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)) + "$")


def _syncable(rel: str) -> bool:
    """Whether a working folder's file is synced: not a local-only folder, no dotted (lock, staging) part."""
    parts = rel.split("/")
    return parts[0] not in ArtifactLayout.WORKING_LOCAL_ONLY and not any(p.startswith(".") for p in parts)


class S3Store(ArtifactStore):
    """Artifacts under `s3://bucket/prefix`; local staging, caches and working folders under `scratch`.
    Picklable (the crawl's workers get one): the connection is made again in each process."""

    def __init__(self, root: str, scratch: str | Path, access: S3Access):
        self.bucket, self.prefix = split_s3_url(root)
        self.scratch = Path(scratch).resolve()
        self.access = access
        self._fs = None
        L = ArtifactLayout
        self._cache = Mirror(self.scratch / L.SCRATCH_S3_CACHE, self.scratch / L.SCRATCH_S3_CACHE_RECORDS)
        self._work = Mirror(self.scratch / L.SCRATCH_WORK, self.scratch / L.SCRATCH_WORK_RECORDS)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fs": None}

    def __repr__(self) -> str:
        return f"S3Store({self.url_root!r}, endpoint={self.access.endpoint!r}, scratch={str(self.scratch)!r})"

    # -- names ------------------------------------------------------------------------------------------------
    @property
    def url_root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _object(self, key: str) -> str:
        """The object key of an artifact key (inside the bucket)."""
        key = "/".join(key_parts(key))
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self._object(key)}"  # s3fs's path: bucket/object

    def url(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def key_of(self, url: str) -> str:
        """The key of an s3:// URL under the root, or of a path in one of the store's working folders."""
        url = str(url)
        if is_s3_url(url):
            root = self.url_root + "/"
            if not url.startswith(root):
                raise UnsafePathError(f"{url} is not under the storage root {self.url_root}")
            return "/".join(key_parts(url[len(root):]))
        path, work = Path(url).resolve(), self._work.files
        if work not in path.parents:
            raise UnsafePathError(f"{url} is neither under the storage root {self.url_root} nor a working folder")
        return path.relative_to(work).as_posix()

    def working_path(self, key: str) -> Path:
        return self._work.path("/".join(key_parts(key)))

    # -- the connection ---------------------------------------------------------------------------------------
    @property
    def fs(self):
        """The s3fs filesystem (made and probed on first use: a refused key fails here, clearly)."""
        if self._fs is None:
            import s3fs

            key, secret = self.access.credentials()
            fs = s3fs.S3FileSystem(key=key, secret=secret, use_listings_cache=False, skip_instance_cache=True,
                                   client_kwargs={"endpoint_url": self.access.endpoint_url}, config_kwargs=CONNECT)
            with self._reaching(self.url_root):
                fs.call_s3("list_objects_v2", Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "",
                           MaxKeys=1)
            self._fs = fs
        return self._fs

    @contextmanager
    def _reaching(self, url: str) -> Iterator[None]:
        """Turn a failure to reach the store into a StorageAccessError (a missing object stays FileNotFoundError)."""
        try:
            yield
        except StorageAccessError:
            raise
        except Exception as err:  # noqa: BLE001 - classified below; anything else is raised unchanged
            problem = access_problem(err, self.access, self.bucket, url)
            if problem is None:
                raise
            raise problem from None

    def register_filesystem(self, con) -> None:
        """Let a DuckDB connection read this store's s3:// URLs (DuckDB's own httpfs is not used)."""
        con.register_filesystem(self.fs)

    # -- listing ----------------------------------------------------------------------------------------------
    def _objects(self, folder: str = "", *, limit: int | None = None) -> dict[str, Remote]:
        """Key -> Remote of every object under the folder key `folder` ("" for the whole root)."""
        folder = "/".join(key_parts(folder)) + "/" if folder.strip("/") else ""
        args = {"Bucket": self.bucket, "Prefix": (f"{self.prefix}/" if self.prefix else "") + folder}
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: dict[str, Remote] = {}
        with self._reaching(self.url(folder) if folder else self.url_root):
            while True:
                page = self.fs.call_s3("list_objects_v2", **args, **({"MaxKeys": limit} if limit else {}))
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):  # a folder marker some servers keep is no artifact
                        found[obj["Key"][strip:]] = Remote.of(obj)
                if not page.get("IsTruncated") or (limit and len(found) >= limit):
                    return found
                args["ContinuationToken"] = page["NextContinuationToken"]

    def _head(self, key: str) -> Remote | None:
        with self._reaching(self.url(key)):
            try:
                head = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self._object(key))
            except FileNotFoundError:
                return None
        return Remote(str(head.get("ETag", "")).strip('"'), int(head["ContentLength"]))

    def exists(self, key: str) -> bool:
        return self._head(key) is not None or bool(self._objects(key, limit=1))

    def list(self, pattern: str) -> list[str]:
        key_parts(pattern)
        fixed = pattern.split("*", 1)[0]
        folder = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
        match = _glob_regex(pattern)
        return sorted(key for key in self._objects(folder) if match.match(key))

    # -- bytes ------------------------------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        with self._reaching(self.url(key)):
            try:
                return self.fs.cat_file(self._path(key))
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, f"no artifact {key} in {self.url_root}", self.url(key)) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._reaching(self.url(key)):
            self.fs.pipe_file(self._path(key), data)  # one PUT: the object appears whole

    def _download(self, key: str):
        def download(path: Path) -> None:
            with self._reaching(self.url(key)):
                self.fs.get_file(self._path(key), str(path))
        return download

    def local_path(self, key: str) -> Path:
        key = "/".join(key_parts(key))
        remote = self._head(key)
        if remote is None:
            if self._objects(key, limit=1):
                return self.local_dir(key)
            self._cache.forget(key)  # gone from the store: no stale copy either
            return self._cache.path(key)
        return self._cache.fetch(key, remote, self._download(key))

    def local_dir(self, prefix: str) -> Path:
        prefix = "/".join(key_parts(prefix))
        remote = {key[len(prefix) + 1:]: r for key, r in self._objects(prefix).items()}
        for rel in self._cache.local_files(prefix):
            if rel not in remote:
                self._cache.forget(f"{prefix}/{rel}")
        for rel, r in remote.items():
            self._cache.fetch(f"{prefix}/{rel}", r, self._download(f"{prefix}/{rel}"))
        return self._cache.path(prefix)

    # -- publishing -------------------------------------------------------------------------------------------
    @contextmanager
    def publish(self, key: str, *, last: str | None = None, what: str | None = None,
                wait: bool = False) -> Iterator[Path]:
        key = "/".join(key_parts(key))
        staging = safe_join(self.scratch / ArtifactLayout.SCRATCH_S3_STAGING, key)
        staging.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(staging.with_name(f"{staging.name}.lock"), what=what or key, unlink=True, wait=wait):
            remove_path(staging)  # what a killed writer of this key left
            try:
                yield staging
                if not staging.exists():
                    raise FileNotFoundError(f"publishing {key}: nothing was written at {staging}")
                self._upload(key, staging, last)
            finally:
                remove_path(staging)

    def _put(self, pairs: list[tuple[Path, str]]) -> None:
        """Upload (local file, key) pairs."""
        if pairs:
            with self._reaching(self.url(pairs[0][1])):
                self.fs.put([str(p) for p, _ in pairs], [self._path(k) for _, k in pairs])

    def _delete(self, keys: list[str]) -> None:
        if keys:
            with self._reaching(self.url(keys[0])):
                self.fs.rm([self._path(k) for k in keys])

    def _upload(self, key: str, staged: Path, last: str | None) -> None:
        """A file in one PUT; a folder's files, then what the old copy had and the new one lacks is deleted,
        then the marker `last` (deleted first, so that the old marker never vouches for half-new files)."""
        if staged.is_file():
            self._put([(staged, key)])
            return
        files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
        old = {k[len(key) + 1:] for k in self._objects(key)}
        marker = last if last in files else None
        if marker in old:
            self._delete([f"{key}/{marker}"])
        self._put([(staged / rel, f"{key}/{rel}") for rel in files if rel != marker])
        self._delete([f"{key}/{rel}" for rel in sorted(old - set(files))])
        if marker:
            self._put([(staged / marker, f"{key}/{marker}")])

    # -- working folders --------------------------------------------------------------------------------------
    @contextmanager
    def working_dir(self, prefix: str) -> Iterator[Path]:
        prefix = "/".join(key_parts(prefix))
        folder = self.working_path(prefix)
        lock = safe_join(self._work.records, f"{prefix}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(lock, what=f"the working folder of {self.url(prefix)}"):
            self._sync_down(prefix)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                yield folder
            finally:
                self._sync_up(prefix)

    def _recorded(self, prefix: str) -> list[str]:
        root = safe_join(self._work.records, prefix)
        return sorted(p.relative_to(root).as_posix()[:-len(".json")] for p in root.rglob("*.json")) \
            if root.is_dir() else []

    def _sync_down(self, prefix: str) -> None:
        """The store's files into the working folder (the store's copy wins); a file the store no longer has
        is removed here too, a file only made here (by a job that was never synced up) is left to the caller."""
        remote = {k[len(prefix) + 1:]: r for k, r in self._objects(prefix).items()}
        for rel in self._recorded(prefix):
            if rel not in remote:
                self._work.forget(f"{prefix}/{rel}")
        for rel, r in remote.items():
            if _syncable(rel):
                self._work.fetch(f"{prefix}/{rel}", r, self._download(f"{prefix}/{rel}"))

    def _sync_up(self, prefix: str) -> None:
        """Files changed or made here to the store, the commit files last; files removed here are deleted there."""
        local = [rel for rel in self._work.local_files(prefix) if _syncable(rel)]
        changed = [rel for rel in local if not self._work.unchanged(f"{prefix}/{rel}")]
        commit = [rel for rel in changed if posixpath.basename(rel) in ArtifactLayout.WORKING_COMMIT]
        for batch in ([rel for rel in changed if rel not in commit], commit):
            self._put([(self._work.path(f"{prefix}/{rel}"), f"{prefix}/{rel}") for rel in batch])
            for rel in batch:  # what the store holds now is these bytes: the next sync down keeps them
                remote = self._head(f"{prefix}/{rel}")
                self._work.remember(f"{prefix}/{rel}", remote, digests(self._work.path(f"{prefix}/{rel}"))[1])
        gone = [rel for rel in self._recorded(prefix) if rel not in local and _syncable(rel)]
        self._delete([f"{prefix}/{rel}" for rel in gone])
        for rel in gone:
            self._work.forget(f"{prefix}/{rel}")

