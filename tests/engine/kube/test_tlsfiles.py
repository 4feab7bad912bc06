"""tlsfiles.py with real certificate files: rebuilt after a rotation, the last good settings kept
(and said once) when a rotation leaves a broken file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trustme

from trayapp.engine.kube.tlsfiles import Pem, TlsMaterial, TlsSettings
from trayapp.errors import KubeconfigError


def replace(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".new")
    temp.write_bytes(data)
    os.replace(temp, path)


def material(folder: Path) -> TlsMaterial:
    where = "the cluster 'c' in the kubeconfig /kc (context 'ctx')"
    return TlsMaterial(ca=Pem("certificate authority", where, path=folder / "ca.crt"),
                       cert=Pem("client certificate", where, path=folder / "client.crt"),
                       key=Pem("client key", where, path=folder / "client.key"))


def write_client(folder: Path, ca: trustme.CA) -> None:
    client = ca.issue_cert("kubetray-user")
    replace(folder / "ca.crt", ca.cert_pem.bytes())
    replace(folder / "client.crt", client.cert_chain_pems[0].bytes())
    replace(folder / "client.key", client.private_key_pem.bytes())


def test_unchanged_files_keep_the_context_and_a_rotation_rebuilds_it(tmp_path: Path) -> None:
    write_client(tmp_path, trustme.CA())
    settings = TlsSettings(tmp_path)
    settings.update(material(tmp_path))
    first = settings.current()
    assert settings.current() is first  # nothing changed: no rebuild per connection
    write_client(tmp_path, trustme.CA())
    assert settings.current() is not first


def test_a_broken_rotation_keeps_the_last_good_settings_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = trustme.CA()
    write_client(tmp_path, ca)
    settings = TlsSettings(tmp_path)
    settings.update(material(tmp_path))
    good = settings.current()
    replace(tmp_path / "ca.crt", b"half-written")
    assert [settings.current() for _ in range(3)] == [good] * 3
    told = [r for r in caplog.records if "keeps using the certificates it read before" in r.getMessage()]
    assert len(told) == 1 and str(tmp_path / "ca.crt") in told[0].getMessage()
    assert told[0].levelno == logging.WARNING
    write_client(tmp_path, ca)
    assert settings.current() is not good


def test_a_missing_file_at_the_first_reading_is_a_kubeconfig_error(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as caught:
        TlsSettings(tmp_path).update(material(tmp_path))
    assert caught.value.message == (f"The certificate authority file {tmp_path / 'ca.crt'} named by the cluster 'c' "
                                    "in the kubeconfig /kc (context 'ctx') does not exist.")
