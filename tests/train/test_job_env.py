"""Secrets stay home: a training job's environment is the allow-list from config, on both backends. The
`checkpoint` asset launches an entrypoint that writes its environment to a file; a fake AWS secret in the
Dagster process must be in neither that file nor, on Slurm, the job's saved environment and script."""

import json

import dagster as dg
import pytest

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import parse_config
from mm_assets.definitions import build_definitions
from mm_assets.partitions import experiments
from trainproject import write_experiment, write_project

EXPERIMENT = "exp-env"
FAKE_SECRET = "fake-secret-for-the-env-test-93a1"
DUMP = "import json, os, sys; json.dump(dict(os.environ), open(os.environ['ENV_DUMP'], 'w'))"


def launch_env_dump(tmp_path, monkeypatch, compute: dict) -> tuple[dict, dg.ExecuteInProcessResult]:
    """Run the checkpoint asset with an entrypoint that dumps its environment; (that environment, the run)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("MM_TEST_NOT_ALLOWED", "x")
    monkeypatch.setenv("LANG", "C.UTF-8")
    dump = tmp_path / "job-env.json"
    config = write_project(tmp_path / "project", compute=compute)
    write_experiment(config, EXPERIMENT, cluster={"entrypoint": ["python", "-c", DUMP],
                                                  "env": {"OMP_NUM_THREADS": "1", "ENV_DUMP": str(dump)}})
    defs = build_definitions(config)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        result = defs.resolve_job_def("train_experiment").execute_in_process(
            partition_key=EXPERIMENT, instance=instance, raise_on_error=False)
    # The dump program saves no checkpoint, so the asset fails after the job; the job itself ran.
    assert "finished without a checkpoint" in str(result.get_step_failure_events()[0].step_failure_data.user_failure_data.description)
    return json.loads(dump.read_text()), result


def assert_allow_listed(env: dict) -> None:
    assert FAKE_SECRET not in json.dumps(env) and "AWS_SECRET_ACCESS_KEY" not in env
    assert "MM_TEST_NOT_ALLOWED" not in env  # not on compute.job_env
    assert env["LANG"] == "C.UTF-8" and env["OMP_NUM_THREADS"] == "1"  # allowed, and cluster.env
    assert "DAGSTER_PIPES_CONTEXT" in env and env["PYTHONPATH"]


def test_the_local_backend_passes_only_the_allow_list(tmp_path, monkeypatch):
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = file-secret\n")
    env, _ = launch_env_dump(tmp_path, monkeypatch, {"backend": "local", "credentials_file": str(creds)})
    assert_allow_listed(env)
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == str(creds)  # boto3 reads the keys from there
    assert "file-secret" not in json.dumps(env)
    assert not [k for k in env if k.startswith("DAGSTER_") and not k.startswith("DAGSTER_PIPES_")]


@pytest.mark.slow
def test_slurm_gets_only_the_allow_list_and_stores_no_secret(tmp_path, monkeypatch, slurm_cluster):
    env, _ = launch_env_dump(tmp_path, monkeypatch, {"backend": "slurm", "slurm_conf": str(slurm_cluster.conf)})
    assert_allow_listed(env)
    job = int(env["SLURM_JOB_ID"])
    saved = slurm_cluster.dir / "state" / f"hash.{job % 10}" / f"job.{job}"
    stored = (saved / "environment").read_bytes() + (saved / "script").read_bytes()
    assert FAKE_SECRET.encode() not in stored and b"MM_TEST_NOT_ALLOWED" not in stored
    exported = env["SLURM_EXPORT_ENV"].split(",")  # what sbatch was told to pass: names only, never ALL
    assert "ALL" not in exported and "AWS_SECRET_ACCESS_KEY" not in exported and "LANG" in exported


def test_credentials_never_come_through_the_allow_list(tmp_path):
    with pytest.raises(ConfigError, match="compute.job_env: .*AWS_SECRET_ACCESS_KEY looks like a credential"):
        parse_config({"compute": {"job_env": ["HOME", "AWS_SECRET_ACCESS_KEY"]}}, base_dir=tmp_path)
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    cfg = parse_config({"compute": {"credentials_file": str(creds)}}, base_dir=tmp_path)
    assert cfg.credentials_file == creds
    missing = parse_config({"compute": {"credentials_file": "nope"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="compute.credentials_file: .*nope does not exist"):
        missing.credentials_file


def test_jobs_of_an_s3_store_get_the_endpoint_and_the_credentials_file_path_only(tmp_path, monkeypatch):
    from resources.compute import ComputeResource

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    with pytest.raises(ConfigError, match="compute.credentials_file: storage.root is on object storage"):
        ComputeResource(object_storage=True).environment()
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    env = ComputeResource(object_storage=True, credentials_file=str(creds)).environment()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333" and env["AWS_SHARED_CREDENTIALS_FILE"] == str(creds)
    assert FAKE_SECRET not in json.dumps(env)
    configured = ComputeResource(object_storage=True, credentials_file=str(creds),
                                 object_storage_endpoint="https://s3.example.org").environment()
    assert configured["AWS_ENDPOINT_URL"] == "https://s3.example.org"
    assert "AWS_ENDPOINT_URL" not in ComputeResource().environment()  # local storage: nothing about S3
