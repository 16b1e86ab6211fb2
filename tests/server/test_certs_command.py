"""``crossfed certs ca`` never silently replaces a CA key."""

from __future__ import annotations

from crossfed.shared import cli


def test_certs_ca_refuses_to_overwrite_an_existing_ca_key_without_force(tmp_path, capsys):
    assert cli.main(["certs", "ca", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "ca.key").read_bytes()
    assert cli.main(["certs", "ca", "--out", str(tmp_path)]) == 1
    assert "ca.key exists" in capsys.readouterr().err
    assert (tmp_path / "ca.key").read_bytes() == first
    assert cli.main(["certs", "ca", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.key").read_bytes() != first


def test_certs_init_refuses_too(tmp_path, capsys):
    assert cli.main(["certs", "ca", "--out", str(tmp_path)]) == 0
    assert cli.main(["certs", "init", "--out", str(tmp_path), "--platforms", "1"]) == 1
    assert "--force" in capsys.readouterr().err
