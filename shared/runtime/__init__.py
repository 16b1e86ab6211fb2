"""What a run needs from the operating system: the process tree it grew, read from ``/proc``."""
