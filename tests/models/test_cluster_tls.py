"""A Dask scheduler reached by a tls:// address is spoken to over TLS, with this host's certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import LocalCluster, Security

from conveyor.models.cluster import ClusterSpec, cluster_security, dask_client, task_runner


@pytest.fixture
def tls_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Security:
    """A self-signed CA, certificate and key as PEM files, named by the CONVEYOR_DASK_TLS_* settings."""
    made = Security.temporary()
    for variable, name, pem in (
        ("CONVEYOR_DASK_TLS_CA_FILE", "ca.pem", made.tls_ca_file),
        ("CONVEYOR_DASK_TLS_CERT", "cert.pem", made.tls_client_cert),
        ("CONVEYOR_DASK_TLS_KEY", "key.pem", made.tls_client_key),
    ):
        (tmp_path / name).write_text(pem)
        monkeypatch.setenv(variable, str(tmp_path / name))
    return made


def test_a_tls_scheduler_is_reached_with_the_configured_certificate(tls_files: Security, tmp_path: Path) -> None:
    with LocalCluster(
        n_workers=1, processes=False, protocol="tls://", security=tls_files, dashboard_address=":0"
    ) as cluster:
        spec = ClusterSpec(workers=2, scheduler=cluster.scheduler_address)
        assert spec.scheduler is not None and spec.scheduler.startswith("tls://")
        with dask_client(spec) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
            assert client.security.require_encryption
            assert client.security.get_tls_config_for_role("client") == {
                "ca_file": str(tmp_path / "ca.pem"),
                "cert": str(tmp_path / "cert.pem"),
                "key": str(tmp_path / "key.pem"),
                "ciphers": None,
            }


def test_the_tune_task_runner_carries_the_same_security(tls_files: Security, tmp_path: Path) -> None:
    runner = task_runner(ClusterSpec(workers=2, scheduler="tls://scheduler.example:8786"))
    security = runner.client_kwargs["security"]
    assert isinstance(security, Security) and security.require_encryption
    assert security.get_tls_config_for_role("client")["cert"] == str(tmp_path / "cert.pem")


def test_plain_tcp_and_local_clusters_need_no_certificate() -> None:
    assert cluster_security(ClusterSpec(workers=2)) is None
    assert cluster_security(ClusterSpec(scheduler="tcp://scheduler.example:8786")) is None


def test_a_tls_scheduler_without_certificates_is_refused_naming_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("CONVEYOR_DASK_TLS_CA_FILE", "CONVEYOR_DASK_TLS_CERT", "CONVEYOR_DASK_TLS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CONVEYOR_DASK_TLS_CERT", "/nowhere/cert.pem")
    with pytest.raises(ValueError, match=r"^tls://scheduler\.example:8786 is a TLS scheduler: set "
                       r"CONVEYOR_DASK_TLS_CA_FILE, CONVEYOR_DASK_TLS_KEY on this host\.$"):  # fmt: skip
        cluster_security(ClusterSpec(scheduler="tls://scheduler.example:8786"))
