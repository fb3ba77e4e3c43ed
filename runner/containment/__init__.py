"""Containment: the bundle reaches nothing of the runner and leaves nothing behind.

`Containment` (in `environment`) is set up once per execution environment and wraps every
attempt; its helpers each own one control: the attempt's work dir (`workdir`), the child's uid and
resource limits (`limits`), its system-call filter (`seccomp`) and keyrings (`keyrings`), the
process that forks it (`spawner`), the runner's own hardening (`hardening`), reading /proc
(`procfs`), killing what an attempt left (`reaper`), and removing its files (`scratch`,
`removal`), System V IPC objects (`sysvipc`) and POSIX message queues (`mqueue`).
"""

from runner.containment.environment import (
    Attempt,
    Containment,
    Controls,
    Isolation,
    StrayRule,
    choose_isolation,
)
from runner.containment.limits import Confinement
from runner.containment.workdir import WorkDirs

__all__ = [
    "Attempt",
    "Confinement",
    "Containment",
    "Controls",
    "Isolation",
    "StrayRule",
    "WorkDirs",
    "choose_isolation",
]
