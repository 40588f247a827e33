"""Showing a notice in the room: the agent's side (``capture/notices.py`` is the hub's).

:func:`show_notice` opens a full-screen window with the text on the room PC's display — in its
own process (``python -m capture.notice_display``, tkinter: the agent's event loop and camera
threads never wait for a GUI toolkit) — and speaks the text with the system's text-to-speech
(``capture.hostos.tts_command``: espeak-ng / spd-say on Linux, SAPI on Windows; skipped quietly
where there is none).  The window process prints ``shown <ISO time>`` once the window is mapped
on the display, then closes itself after the notice's seconds.

Without a display (``capture.hostos.has_display``: a headless PC, an agent running as a Windows
service) nothing is opened: the result says ``shown: false`` and why, and the agent reports that
to the hub, so the supervisor knows the room did not see it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from capture.hostos import has_display, tts_command

log = logging.getLogger("capture.notice")

#: How long the window process may take to map its window.
SHOW_TIMEOUT = 15.0


async def speak(text: str) -> bool:
    """Start the system's text-to-speech on ``text``; False (quietly) when there is none."""
    argv = tts_command(text)
    if argv is None:
        log.debug("no text-to-speech on this PC: notice not spoken")
        return False
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as e:
        log.info("text-to-speech did not start (%s): notice not spoken", e)
        return False

    async def reap() -> None:
        with contextlib.suppress(Exception):
            await proc.wait()

    _background.add(t := asyncio.create_task(reap()))
    t.add_done_callback(_background.discard)
    return True


_background: set[asyncio.Task[None]] = set()


async def show_notice(text: str, seconds: float) -> dict[str, Any]:
    """Show ``text`` full-screen for ``seconds`` and speak it: ``{"shown", "shown_at",
    "reason", "spoken"}`` once the window is on the display (or it is known that it cannot be)."""
    spoken = await speak(text)
    ok, reason = has_display()
    if not ok:
        log.warning("room notice not shown: %s", reason)
        return {"shown": False, "shown_at": None, "reason": reason, "spoken": spoken}
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "capture.notice_display", "--seconds", f"{seconds:g}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        why = f"window process did not start: {e}"
        return {"shown": False, "shown_at": None, "reason": why, "spoken": spoken}
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(text.encode("utf-8"))
    proc.stdin.close()
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), SHOW_TIMEOUT)).decode(errors="replace").strip()
    except TimeoutError:
        line = ""
    if line.startswith("shown "):
        _background.add(t := asyncio.create_task(_wait(proc)))
        t.add_done_callback(_background.discard)
        return {"shown": True, "shown_at": line.split(" ", 1)[1], "reason": None, "spoken": spoken}
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    err = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()
    why = line.removeprefix("error ").strip() or (err[-1] if err else "the window did not appear")
    log.warning("room notice not shown: %s", why)
    return {"shown": False, "shown_at": None, "reason": why[:200], "spoken": spoken}


async def _wait(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(Exception):
        await proc.wait()


# -- the window process ----------------------------------------------------------------------------


def window_main(argv: list[str] | None = None) -> int:
    """``python -m capture.notice_display --seconds N`` with the text on stdin."""
    ap = argparse.ArgumentParser(prog="python -m capture.notice_display")
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args(argv)
    text = sys.stdin.read().strip()
    try:
        import tkinter as tk
    except ImportError:
        print("error no tkinter on this PC (install python3-tk)", flush=True)
        return 3
    try:
        root = tk.Tk()
    except tk.TclError as e:
        print(f"error cannot open the display: {e}", flush=True)
        return 4
    root.title("evalwatch")
    root.configure(bg="#9b1c1c")
    root.attributes("-fullscreen", True)
    with contextlib.suppress(tk.TclError):
        root.attributes("-topmost", True)
    w, h = root.winfo_screenwidth(), root.winfo_screenheight()
    size = max(24, min(h // 7, int(w * 0.8 / max(1, len(text)))))
    label = tk.Label(root, text=text, fg="white", bg="#9b1c1c", font=("Noto Sans CJK SC", -size, "bold"),
                     wraplength=int(w * 0.9), justify="center")
    label.pack(expand=True, fill="both")
    root.update_idletasks()
    root.wait_visibility(label)
    print(f"shown {datetime.now(UTC).isoformat()}", flush=True)
    root.after(int(args.seconds * 1000), root.destroy)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(window_main())
