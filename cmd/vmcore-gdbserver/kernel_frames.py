# Loaded by `vmcore-gdbserver gdb`; `source` it in other gdb sessions.
#
# gdb has no unwind information for the kernel's entry code, so after a
# syscall or exception entry frame (entry_SYSCALL_64, asm_exc_page_fault)
# it guesses and prints frames made of the saved user registers. This frame
# filter ends every backtrace at the first frame below the kernel half of
# the address space, where the kernel stack ends. `monitor bt` shows the
# user registers of that boundary, as crash does.
import gdb

USER_LIMIT = 0x0000800000000000  # no kernel text lives below this


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
            yield f


_StopAtUserSpace()
