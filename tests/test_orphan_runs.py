"""Which runs' processes are gone: a live process is its owner, a dead one or a reused pid is not."""

import subprocess
import sys

from mm_assets.orphan_runs import PID_TAG, START_TAG, owner_alive, owner_tags


def test_owner_alive_follows_the_process_not_just_its_pid():
    mine = owner_tags()
    assert owner_alive(mine)
    assert not owner_alive({**mine, START_TAG: "another-boot:1"}), "same pid, another process: reused"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not owner_alive({PID_TAG: done.stdout.strip()})
    assert not owner_alive({}) and not owner_alive({PID_TAG: "x"})
