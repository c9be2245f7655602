# Loaded by `vmcore-gdbserver gdb`; `source` it in other gdb sessions.
#
# With the server's ORC unwind object (a library in `info sharedlibrary`)
# plain gdb unwinds through the kernel's entry code: each exception or
# interrupt frame is a signal frame, which gdb prints as "<signal handler
# called>", and the frame after an entry from user space is the user RIP.
# This frame filter prints those frames under their function's name
# (asm_exc_page_fault, entry_SYSCALL_64_after_hwframe) and ends every
# backtrace at the first frame below the kernel half of the address space,
# where the kernel stack ends; without the unwind object (a kernel without
# ORC) that is also where gdb's guesses from saved user registers begin.
# `monitor bt` shows the user registers of that boundary, as crash does.
import gdb
from gdb.FrameDecorator import FrameDecorator

USER_LIMIT = 0x0000800000000000  # no kernel text lives below this


class _Named(FrameDecorator):
    def function(self):
        f = self.inferior_frame()
        if f.type() == gdb.SIGTRAMP_FRAME and f.name() is not None:
            return f.name()
        return super().function()


class _StopAtUserSpace:
    def __init__(self):
        self.name = "vmcore-gdbserver-user-boundary"
        self.priority = 100
        self.enabled = True
        gdb.frame_filters[self.name] = self

    def filter(self, frames):
        first = True
        for f in frames:
            if not first and f.inferior_frame().pc() < USER_LIMIT:
                return
            first = False
            yield _Named(f)


_StopAtUserSpace()
