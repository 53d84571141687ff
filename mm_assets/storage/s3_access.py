"""How the project reaches object storage: the endpoint, the credentials, and what a failure tells the user.

Credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, given to the storage resource
as dg.EnvVar) or from the AWS shared-credentials file that `storage.credentials_file` names (its [default]
profile), never from the repository. The values are never printed: `S3Access` hides them from its repr, and
every failure is reported as a `StorageAccessError` that names the endpoint, the bucket and what to check,
with the botocore chain dropped.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mm_assets.config.base import ConfigError

# The variables boto3 reads (and so megatron-core's S3 reader in a job): keys, endpoint, shared-credentials file.
ACCESS_KEY_VAR, SECRET_KEY_VAR, ENDPOINT_VAR = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"
CREDENTIALS_FILE_VAR = "AWS_SHARED_CREDENTIALS_FILE"
PROFILE = "default"
S3_SCHEME = "s3://"
S3_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")

# botocore's error codes by what the user should check.
REFUSED_KEYS = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403", "Forbidden",
                "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}
NO_BUCKET = {"NoSuchBucket"}


class StorageAccessError(RuntimeError):
    """The object store cannot be used as configured (refused keys, unreachable endpoint, missing bucket)."""


def is_s3_url(url: str) -> bool:
    """Whether `url` names an object on S3 (a storage root, a Megatron prefix) rather than a local path."""
    return str(url).startswith(S3_SCHEME)


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of `s3://bucket[/prefix]`; ValueError naming the URL."""
    m = S3_URL.match(url)
    prefix = (m["prefix"] or "").strip("/") if m else ""
    if not m or any(part in ("", ".", "..") for part in prefix.split("/") if prefix) or "//" in prefix:
        raise ValueError(f"{url!r} is not s3://bucket/prefix (a bucket of 3-63 characters [a-z0-9.-], then a "
                         "prefix without empty, '.' or '..' parts)")
    return m["bucket"], prefix


def read_credentials_file(path: str | Path) -> tuple[str, str]:
    """(access key, secret) of the [default] profile of an AWS shared-credentials file; ConfigError naming the
    file and the missing key (never a value)."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as err:
        raise ConfigError(f"storage.credentials_file: cannot read {path} as an AWS shared-credentials file "
                          f"({type(err).__name__})") from None
    if not parser.has_section(PROFILE):
        raise ConfigError(f"storage.credentials_file: {path} has no [{PROFILE}] profile")
    keys = [parser.get(PROFILE, name, fallback="").strip() for name in ("aws_access_key_id", "aws_secret_access_key")]
    missing = [name for name, value in zip(("aws_access_key_id", "aws_secret_access_key"), keys) if not value]
    if missing:
        raise ConfigError(f"storage.credentials_file: the [{PROFILE}] profile of {path} has no {' or '.join(missing)}")
    return keys[0], keys[1]


@dataclass(frozen=True)
class S3Access:
    """Where the object store is and the keys to it. `key`/`secret` are the environment's (the resource's
    dg.EnvVar); `credentials_file`, when set, is used instead."""

    endpoint_url: str | None = None
    credentials_file: str | None = None
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, *, endpoint_url: str | None = None, credentials_file: str | Path | None = None,
                         environ: Mapping[str, str] | None = None) -> S3Access:
        """The configured endpoint (else AWS_ENDPOINT_URL) and credentials file (else the key pair in `environ`)."""
        environ = os.environ if environ is None else environ
        return cls(endpoint_url or environment_endpoint(environ),
                   str(credentials_file) if credentials_file else None,
                   environ.get(ACCESS_KEY_VAR) or None, environ.get(SECRET_KEY_VAR) or None)

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or "AWS S3 (no storage.endpoint_url or AWS_ENDPOINT_URL set)"

    @property
    def key_source(self) -> str:
        if self.credentials_file:
            return f"the [{PROFILE}] profile of storage.credentials_file {self.credentials_file}"
        return f"{ACCESS_KEY_VAR} / {SECRET_KEY_VAR} in the environment"

    def credentials(self) -> tuple[str, str]:
        """(access key, secret); StorageAccessError saying where to put them when there are none."""
        if self.credentials_file:
            return read_credentials_file(self.credentials_file)
        if self.key and self.secret:
            return self.key, self.secret
        raise StorageAccessError(f"object storage at {self.endpoint}: no credentials: set {ACCESS_KEY_VAR} and "
                                 f"{SECRET_KEY_VAR}, or point storage.credentials_file at an AWS shared-credentials "
                                 "file")


def environment_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """AWS_ENDPOINT_URL, which boto3 (and so megatron-core's S3 reader in a job) reads too."""
    return (os.environ if environ is None else environ).get(ENDPOINT_VAR) or None


def _error_code(err: BaseException) -> str:
    """botocore's error code of `err` or of what it was raised from (s3fs translates ClientErrors)."""
    for e in (err, err.__cause__, err.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""


def access_problem(err: BaseException, access: S3Access, bucket: str, url: str) -> StorageAccessError | None:
    """The StorageAccessError for `err` raised while using `url`, or None when `err` is not about access
    (a missing object stays a FileNotFoundError)."""
    import botocore.exceptions as boto

    code = _error_code(err)
    where = f"object storage at {access.endpoint}, bucket {bucket}"
    if code in REFUSED_KEYS or (isinstance(err, PermissionError) and code not in NO_BUCKET):
        return StorageAccessError(
            f"{where}: the credentials were refused ({code or type(err).__name__}) reading {url}: check "
            f"{access.key_source} (the access key and its secret) and that this key may read and write bucket "
            f"{bucket}")
    if code in NO_BUCKET:
        return StorageAccessError(f"{where}: the bucket does not exist: create it, or fix storage.root ({url})")
    if isinstance(err, (boto.EndpointConnectionError, boto.ConnectTimeoutError, boto.ReadTimeoutError,
                        boto.ConnectionClosedError, boto.ProxyConnectionError)):
        return StorageAccessError(
            f"{where}: cannot connect ({type(err).__name__}) reading {url}: check storage.endpoint_url (or "
            f"{ENDPOINT_VAR}) and that the server is up and reachable from this machine")
    if isinstance(err, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return StorageAccessError(f"{where}: no usable credentials: check {access.key_source}")
    if isinstance(err, boto.BotoCoreError) or (code and not isinstance(err, FileNotFoundError)):
        return StorageAccessError(f"{where}: {type(err).__name__} {code} reading {url}: {_first_line(err)}")
    return None


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
