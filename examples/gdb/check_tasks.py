# check_tasks.py: a gdb Python example for vmcore-gdbserver.
#
# Walks the kernel's task list through gdb values (init_task.tasks, then
# each thread group's signal->thread_head) and checks it against the
# thread list the server presents: every task must be a thread whose id
# is its pid and whose name is its comm. Prints a small ps table.
#
#   gdb -iex 'set index-cache enabled on' vmlinux -ex 'target remote :1234' -x examples/gdb/check_tasks.py
import gdb


def container_of(ptr, typename, member):
    t = gdb.lookup_type(typename)
    off = int(gdb.parse_and_eval("(unsigned long)&((%s *)0)->%s" % (typename, member)))
    return gdb.Value(int(ptr) - off).cast(t.pointer())


def list_entries(head, typename, member):
    """Yield the containers on the list at gdb.Value head (a list_head)."""
    node = head["next"]
    seen = 0
    while int(node) != int(head.address):
        yield container_of(node, typename, member)
        node = node["next"]
        seen += 1
        if seen > 1 << 22:
            raise gdb.GdbError("list at 0x%x does not end" % int(head.address))


def kernel_tasks():
    init = gdb.parse_and_eval("init_task")
    for leader in list_entries(init["tasks"], "struct task_struct", "tasks"):
        for t in list_entries(leader["signal"]["thread_head"], "struct task_struct", "thread_node"):
            yield t


def main():
    inferior = gdb.selected_inferior()
    threads = {t.ptid[1]: t for t in inferior.threads()}
    n = 0
    print("%7s %7s  %-16s %s" % ("PID", "TGID", "COMM", "TASK"))
    for t in kernel_tasks():
        pid = int(t["pid"])
        comm = t["comm"].string()
        print("%7d %7d  %-16s 0x%x" % (pid, int(t["tgid"]), comm, int(t)))
        th = threads.get(pid)
        if th is None:
            raise gdb.GdbError("check_tasks: pid %d (%s) is not a thread" % (pid, comm))
        if th.name != comm:
            raise gdb.GdbError("check_tasks: thread %d is named %r, its comm is %r" % (pid, th.name, comm))
        n += 1
    # The server adds one idle task per CPU (pid 0), which no list holds.
    idle = [t for t in threads.values() if t.name.startswith("swapper/")]
    if n + len(idle) != len(threads):
        raise gdb.GdbError("check_tasks: %d tasks + %d idle, but %d threads" % (n, len(idle), len(threads)))
    print("check_tasks: %d tasks, every one a thread with its comm" % n)


main()
