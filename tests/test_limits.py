"""The open-file limit is raised for real, in a child process so this one is left alone."""

import subprocess
import sys

import pytest

pytest.importorskip("resource")


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    script = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "from trayapp.platform.limits import raise_open_file_limit\n"
        "new = raise_open_file_limit()\n"
        "print(new, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    returned, soft, hard = out.split()
    assert returned == soft
    assert int(soft) > 256 or int(hard) <= 256
