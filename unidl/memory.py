"""Memory of this process, for benchmarks: the resident set now and at its peak.

Linux gives both in ``/proc/self/status`` (VmRSS, VmHWM), and the peak can be
reset (``/proc/self/clear_refs``), so a measurement can start from zero after
the framework is imported. Elsewhere ``ru_maxrss`` (the peak since the process
started) is what there is.
"""
from __future__ import annotations

import resource


def proc_status_mb(field_name: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return proc_status_mb("VmHWM") is not None
    except OSError:
        return False


def max_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident set of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
