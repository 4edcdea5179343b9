"""Connection files: round trip, permissions, location, jupyter_client compatibility, errors."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from kernel.protocol import CHANNELS, ConnectionFileError, ConnectionInfo, runtime_dir

INFO = ConnectionInfo(
    ip="127.0.0.1",
    transport="tcp",
    shell_port=50001,
    iopub_port=50002,
    stdin_port=50003,
    control_port=50004,
    hb_port=50005,
    key=b"a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
    signature_scheme="hmac-sha256",
    kernel_name="loom",
)

VALID: dict[str, object] = {
    "shell_port": 1,
    "iopub_port": 2,
    "stdin_port": 3,
    "control_port": 4,
    "hb_port": 65535,
}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- round trip and permissions --------------------------------------------


def test_write_read_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "kernel-1.json"
    assert INFO.write(target) == target
    assert ConnectionInfo.read(target) == INFO
    assert ConnectionInfo.read(str(target)) == INFO


def test_round_trip_ipc_and_other_scheme(tmp_path: Path) -> None:
    info = ConnectionInfo(
        ip=str(tmp_path / "kernel-ipc"),
        transport="ipc",
        shell_port=1,
        iopub_port=2,
        stdin_port=3,
        control_port=4,
        hb_port=5,
        key=b"\xc3\xa9-utf8-key",
        signature_scheme="hmac-sha512",
    )
    assert ConnectionInfo.read(info.write(tmp_path / "c.json")) == info


def test_written_json_uses_jupyter_client_field_names(tmp_path: Path) -> None:
    data = json.loads(INFO.write(tmp_path / "c.json").read_text(encoding="utf-8"))
    assert data == {
        "shell_port": 50001,
        "iopub_port": 50002,
        "stdin_port": 50003,
        "control_port": 50004,
        "hb_port": 50005,
        "ip": "127.0.0.1",
        "transport": "tcp",
        "key": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
        "signature_scheme": "hmac-sha256",
        "kernel_name": "loom",
    }


def test_written_file_mode_is_0600(tmp_path: Path) -> None:
    assert _mode(INFO.write(tmp_path / "c.json")) == 0o600


def test_mode_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = INFO.write(tmp_path / "c.json")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600


def test_overwriting_a_world_readable_file_makes_it_0600(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o644)
    INFO.write(target)
    assert _mode(target) == 0o600
    assert ConnectionInfo.read(target) == INFO


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    INFO.write(tmp_path / "c.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_write_creates_missing_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.json"
    INFO.write(target)
    assert ConnectionInfo.read(target) == INFO


def test_default_path_is_in_jupyter_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime-here"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    first = INFO.write()
    second = INFO.write()
    assert first.parent == runtime
    assert re.fullmatch(r"kernel-loom-[0-9a-f]{12}\.json", first.name)
    assert first != second
    assert _mode(first) == 0o600
    assert ConnectionInfo.read(first) == INFO
    assert sorted(runtime.iterdir()) == sorted([first, second])


# -- runtime_dir -----------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "JUPYTER_RUNTIME_DIR",
        "JUPYTER_DATA_DIR",
        "XDG_DATA_HOME",
        "JUPYTER_PLATFORM_DIRS",
        "JUPYTER_NO_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _jupyter_core_runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux path rules")
def test_runtime_dir_matches_jupyter_core(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime_dir() == clean_env / "home" / ".local" / "share" / "jupyter" / "runtime"
    assert runtime_dir() == _jupyter_core_runtime_dir()

    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))
    assert runtime_dir() == clean_env / "xdg" / "jupyter" / "runtime"
    assert runtime_dir() == _jupyter_core_runtime_dir()

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(clean_env / "data"))
    assert runtime_dir() == clean_env / "data" / "runtime"
    assert runtime_dir() == _jupyter_core_runtime_dir()

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(clean_env / "rt"))
    assert runtime_dir() == clean_env / "rt"
    assert runtime_dir() == _jupyter_core_runtime_dir()


# -- interoperability with jupyter_client ----------------------------------


def test_jupyter_client_reads_a_file_loom_wrote(tmp_path: Path) -> None:
    path = INFO.write(tmp_path / "kernel-loom.json")
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert client.ip == INFO.ip
    assert client.transport == "tcp"
    assert client.shell_port == INFO.shell_port
    assert client.iopub_port == INFO.iopub_port
    assert client.stdin_port == INFO.stdin_port
    assert client.control_port == INFO.control_port
    assert client.hb_port == INFO.hb_port
    assert client.session.key == INFO.key
    assert client.session.signature_scheme == INFO.signature_scheme


def test_jupyter_client_reads_loom_ipc_file(tmp_path: Path) -> None:
    info = ConnectionInfo(
        ip=str(tmp_path / "k"),
        transport="ipc",
        shell_port=1,
        iopub_port=2,
        stdin_port=3,
        control_port=4,
        hb_port=5,
    )
    client = BlockingKernelClient()
    client.load_connection_file(str(info.write(tmp_path / "c.json")))
    assert client.transport == "ipc"
    assert client.ip == info.ip
    assert client.hb_port == info.hb_port


def test_loom_reads_a_file_jupyter_client_wrote(tmp_path: Path) -> None:
    fname, written = write_connection_file(
        str(tmp_path / "kernel-jc.json"),
        shell_port=6001,
        iopub_port=6002,
        stdin_port=6003,
        hb_port=6004,
        control_port=6005,
        ip="127.0.0.1",
        key=b"jc-secret-key",
        signature_scheme="hmac-sha512",
        kernel_name="python3",
    )
    info = ConnectionInfo.read(fname)
    assert info == ConnectionInfo(
        ip="127.0.0.1",
        transport="tcp",
        shell_port=6001,
        iopub_port=6002,
        stdin_port=6003,
        hb_port=6004,
        control_port=6005,
        key=b"jc-secret-key",
        signature_scheme="hmac-sha512",
        kernel_name="python3",
    )
    assert info.to_dict() == {**written, "key": "jc-secret-key"}
    assert info.url("shell") == "tcp://127.0.0.1:6001"


def test_loom_reads_jupyter_client_file_with_random_ports(tmp_path: Path) -> None:
    fname, _ = write_connection_file(str(tmp_path / "k.json"), ip="127.0.0.1", key=b"k")
    written = json.loads(Path(fname).read_text(encoding="utf-8"))
    info = ConnectionInfo.read(fname)
    for channel in CHANNELS:
        assert info.port(channel) == written[f"{channel}_port"]
        assert info.port(channel) > 0


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    data = {**INFO.to_dict(), "jupyter_session": "/x.ipynb", "curve_publickey": None}
    assert ConnectionInfo.read(_write_json(tmp_path / "c.json", data)) == INFO


def test_optional_fields_take_jupyter_client_defaults() -> None:
    info = ConnectionInfo.from_dict(VALID)
    assert info.ip == "127.0.0.1"
    assert info.transport == "tcp"
    assert info.key == b""
    assert info.signature_scheme == "hmac-sha256"
    assert info.kernel_name == ""


# -- bad files -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(
        ConnectionFileError,
        match=rf"^cannot read connection file {re.escape(str(path))}: No such file or directory$",
    ):
        ConnectionInfo.read(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(
        ConnectionFileError, match=r"^cannot read connection file .*: Is a directory$"
    ):
        ConnectionInfo.read(tmp_path)


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"shell_port": ', encoding="utf-8")
    with pytest.raises(
        ConnectionFileError, match=rf"^connection file {re.escape(str(path))} is not valid JSON: "
    ):
        ConnectionInfo.read(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b'{"key": "\xff\xfe"}')
    with pytest.raises(ConnectionFileError, match=r"^connection file .* is not valid UTF-8: "):
        ConnectionInfo.read(path)


@pytest.mark.parametrize("data", [[1, 2], "text", 5, None])
def test_non_object(tmp_path: Path, data: object) -> None:
    path = _write_json(tmp_path / "c.json", data)
    with pytest.raises(
        ConnectionFileError,
        match=rf"^connection file {re.escape(str(path))} must hold a JSON object$",
    ):
        ConnectionInfo.read(path)


@pytest.mark.parametrize("channel", CHANNELS)
def test_missing_port(tmp_path: Path, channel: str) -> None:
    data = {k: v for k, v in VALID.items() if k != f"{channel}_port"}
    path = _write_json(tmp_path / "c.json", data)
    with pytest.raises(
        ConnectionFileError,
        match=rf"^connection file {re.escape(str(path))}: {channel}_port must be a port number, "
        r"got None$",
    ):
        ConnectionInfo.read(path)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("5000", "'5000'"), (True, "True"), (0, "0"), (-1, "-1"), (65536, "65536"), (50.5, "50.5")],
)
def test_bad_port_value(tmp_path: Path, value: object, shown: str) -> None:
    path = _write_json(tmp_path / "c.json", {**VALID, "iopub_port": value})
    with pytest.raises(
        ConnectionFileError,
        match=rf": iopub_port must be a port number, got {re.escape(shown)}$",
    ):
        ConnectionInfo.read(path)


def test_transport_udp(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "c.json", {**VALID, "transport": "udp"})
    with pytest.raises(
        ConnectionFileError,
        match=rf"^connection file {re.escape(str(path))}: transport must be 'tcp' or 'ipc', "
        r"not 'udp'$",
    ):
        ConnectionInfo.read(path)


@pytest.mark.parametrize(
    ("field", "value", "type_name"),
    [
        ("ip", 127, "int"),
        ("key", None, "NoneType"),
        ("signature_scheme", [], "list"),
        ("kernel_name", {}, "dict"),
    ],
)
def test_non_string_fields(tmp_path: Path, field: str, value: object, type_name: str) -> None:
    path = _write_json(tmp_path / "c.json", {**VALID, field: value})
    with pytest.raises(ConnectionFileError, match=rf": {field} must be a string, got {type_name}$"):
        ConnectionInfo.read(path)


def test_connection_file_error_is_a_value_error() -> None:
    assert issubclass(ConnectionFileError, ValueError)


# -- urls ------------------------------------------------------------------


def test_url_tcp() -> None:
    assert INFO.url("shell") == "tcp://127.0.0.1:50001"
    assert INFO.url("iopub") == "tcp://127.0.0.1:50002"
    assert INFO.url("stdin") == "tcp://127.0.0.1:50003"
    assert INFO.url("control") == "tcp://127.0.0.1:50004"
    assert INFO.url("hb") == "tcp://127.0.0.1:50005"


def test_url_tcp_hostname_and_wildcard() -> None:
    assert ConnectionInfo(ip="localhost", shell_port=9).url("shell") == "tcp://localhost:9"
    assert ConnectionInfo(ip="*", hb_port=7).url("hb") == "tcp://*:7"


@pytest.mark.parametrize("ip", ["::1", "fe80::1", "::"])
def test_url_ipv6_is_bracketed(ip: str) -> None:
    assert ConnectionInfo(ip=ip, control_port=5555).url("control") == f"tcp://[{ip}]:5555"


def test_url_ipc() -> None:
    info = ConnectionInfo(ip="/tmp/kernel-abc", transport="ipc", shell_port=1, hb_port=5)
    assert info.url("shell") == "ipc:///tmp/kernel-abc-1"
    assert info.url("hb") == "ipc:///tmp/kernel-abc-5"


def test_port_by_channel_name() -> None:
    assert [INFO.port(c) for c in CHANNELS] == [50001, 50002, 50003, 50004, 50005]


# -- misc ------------------------------------------------------------------


def test_new_key_is_random_hex() -> None:
    keys = {ConnectionInfo.new_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert re.fullmatch(rb"[0-9a-f]{32}", key)


def test_key_is_not_in_repr() -> None:
    assert INFO.key.decode() not in repr(INFO)
