#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and type an answer at its prompt.

Usage: pty_answer.py PROMPT_END ANSWER -- COMMAND [ARGS...]

Waits until the command's output contains PROMPT_END, types ANSWER and a
newline, then relays everything the command printed to stdout and exits
with the command's exit code. Gives up after 30 seconds.
"""

import os
import pty
import select
import sys
import time


def main() -> int:
    sep = sys.argv.index("--")
    prompt, answer = sys.argv[1].encode(), sys.argv[2].encode()
    argv = sys.argv[sep + 1 :]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    answered = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if not answered and prompt in out:
            os.write(fd, answer + b"\n")
            answered = True
    else:
        os.kill(pid, 9)
        sys.stdout.write(out.decode(errors="replace"))
        print("\npty_answer: timed out", file=sys.stderr)
        return 124
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors="replace"))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
