package kernel

import (
	"errors"
	"fmt"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"strings"
)

// Utsname is init_uts_ns.name.
type Utsname struct {
	Sysname, Nodename, Release, Version, Machine, Domainname string
}

// Uname reads the kernel's uts name.
func (k *Kernel) Uname() (Utsname, error) {
	ns, err := k.Symbol("init_uts_ns")
	if err != nil {
		return Utsname{}, err
	}
	nameOff, err := k.Types.Offset("uts_namespace", "name")
	if err != nil {
		return Utsname{}, err
	}
	var u Utsname
	for _, f := range []struct {
		member string
		dst    *string
	}{{"sysname", &u.Sysname}, {"nodename", &u.Nodename}, {"release", &u.Release},
		{"version", &u.Version}, {"machine", &u.Machine}, {"domainname", &u.Domainname}} {
		off, err := k.Types.Offset("new_utsname", f.member)
		if err != nil {
			return u, err
		}
		n, err := k.arrayLen("new_utsname", f.member, 1, 4096) // __NEW_UTS_LEN + 1
		if err != nil {
			return u, err
		}
		if *f.dst, err = k.readCString(ns+nameOff+off, int(n)); err != nil {
			return u, err
		}
	}
	return u, nil
}

// MemInfo is what crash's `kmem -i` shows, in pages.
type MemInfo struct {
	PageSize    uint64
	Total       uint64 // totalram_pages
	Free        uint64 // NR_FREE_PAGES
	Shared      uint64 // NR_SHMEM
	Buffers     uint64 // block-device page cache
	Cached      uint64 // file pages minus swap cache and buffers
	Slab        uint64 // reclaimable + unreclaimable slab
	SwapTotal   uint64
	SwapFree    uint64 // nr_swap_pages
	HugeTotal   uint64 // every hstate's nr_huge_pages, in base pages
	HugeFree    uint64 // every hstate's free_huge_pages, in base pages
	CommitLimit uint64
	Committed   uint64
	Missing     []string // what could not be read
}

// Used is total minus free.
func (m MemInfo) Used() uint64 { return m.Total - min(m.Free, m.Total) }

func (k *Kernel) atomicLong(sym string) (uint64, error) {
	a, err := k.Symbol(sym)
	if err != nil {
		return 0, err
	}
	return k.ReadU64(a)
}

// vmStat reads one item of vm_zone_stat or vm_node_stat, named by its enum.
func (k *Kernel) vmStat(array, item string) (uint64, error) {
	idx, err := k.Types.EnumValue(item)
	if err != nil {
		return 0, err
	}
	a, err := k.Symbol(array)
	if err != nil {
		return 0, err
	}
	v, err := k.ReadU64(a + uint64(idx)*8)
	if int64(v) < 0 { // per-CPU drift can leave a small negative total
		v = 0
	}
	return v, err
}

// vmStatItem reads a vmstat item from vm_node_stat or vm_zone_stat,
// whichever array's enum (node_stat_item, zone_stat_item) holds it: items
// moved between the two over the years.
func (k *Kernel) vmStatItem(item string) (uint64, error) {
	for _, a := range [][2]string{{"node_stat_item", "vm_node_stat"}, {"zone_stat_item", "vm_zone_stat"}} {
		if e, err := k.Types.Enum(a[0]); err == nil {
			if _, ok := e[item]; ok {
				return k.vmStat(a[1], item)
			}
		}
	}
	return 0, fmt.Errorf("no vmstat item %s in node_stat_item or zone_stat_item", item)
}

// MemInfo gathers the memory summary.
func (k *Kernel) MemInfo() MemInfo {
	m := MemInfo{PageSize: k.Dump.PageSize()}
	note := func(what string, err error) {
		if err != nil {
			m.Missing = append(m.Missing, fmt.Sprintf("%s (%v)", what, err))
		}
	}
	var err error
	m.Total, err = k.TotalRAM()
	note("total", err)
	m.Free, err = k.vmStat("vm_zone_stat", "NR_FREE_PAGES")
	note("free", err)
	m.Shared, err = k.vmStat("vm_node_stat", "NR_SHMEM")
	note("shared", err)
	file, err := k.vmStat("vm_node_stat", "NR_FILE_PAGES")
	note("cached", err)
	swapCache, _ := k.vmStat("vm_node_stat", "NR_SWAPCACHE")
	m.Buffers, err = k.blockdevPages()
	note("buffers", err)
	if file > swapCache+m.Buffers {
		m.Cached = file - swapCache - m.Buffers
	}
	// Slab pages: NR_SLAB_*_B since 5.9 (bytes per CPU, pages in the
	// global array), NR_SLAB_* before; zone or node stat as the enum says.
	var slabErr error
	for _, names := range [][2]string{{"NR_SLAB_RECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE_B"}, {"NR_SLAB_RECLAIMABLE", "NR_SLAB_UNRECLAIMABLE"}} {
		sr, err1 := k.vmStatItem(names[0])
		su, err2 := k.vmStatItem(names[1])
		if slabErr = errors.Join(err1, err2); slabErr == nil {
			m.Slab = sr + su
			break
		}
	}
	note("slab", slabErr)
	m.SwapTotal, _ = k.atomicLong("total_swap_pages")
	if m.SwapTotal > 0 {
		m.SwapFree, err = k.atomicLong("nr_swap_pages")
		note("swap free", err)
		m.SwapFree = min(m.SwapFree, m.SwapTotal)
	}
	m.HugeTotal, m.HugeFree, err = k.hugetlbPages()
	note("huge pages", err)
	// CommitLimit as mm/util.c vm_commit_limit(): a fixed number of kbytes
	// if sysctl_overcommit_kbytes is set, else a ratio of RAM, plus swap.
	ratioAddr, err := k.Symbol("sysctl_overcommit_ratio")
	if err == nil {
		ratio, _ := k.readU32(ratioAddr)
		kbytes, _ := k.atomicLong("sysctl_overcommit_kbytes")
		huge := m.HugeTotal
		if kbytes != 0 {
			m.CommitLimit = kbytes * 1024 / m.PageSize
		} else {
			m.CommitLimit = (m.Total - min(huge, m.Total)) * uint64(ratio) / 100
		}
		m.CommitLimit += m.SwapTotal
	}
	note("commit limit", err)
	// vm_committed_as is a percpu_counter; its count is the folded total.
	if a, err := k.Symbol("vm_committed_as"); err == nil {
		off, err := k.Types.Offset("percpu_counter", "count")
		if err == nil {
			v, err := k.ReadU64(a + off)
			if int64(v) < 0 {
				v = 0
			}
			m.Committed = v
			note("committed", err)
		} else {
			note("committed", err)
		}
	} else {
		note("committed", err)
	}
	return m
}

// TotalRAM returns the pages the kernel manages (_totalram_pages, an
// atomic since 5.0; a plain totalram_pages before).
func (k *Kernel) TotalRAM() (uint64, error) {
	if v, err := k.atomicLong("_totalram_pages"); err == nil {
		return v, nil
	}
	return k.atomicLong("totalram_pages")
}

// hugetlbPages returns the huge pages of every hstate, all and free, in
// base pages (hstates[i].nr_huge_pages and free_huge_pages << order);
// most dumps have none configured.
func (k *Kernel) hugetlbPages() (total, free uint64, err error) {
	a, err := k.Symbol("hugetlb_max_hstate")
	if err != nil {
		return 0, 0, nil // built without hugetlbfs
	}
	n, err := k.readU32(a)
	if err != nil || n == 0 {
		return 0, 0, err
	}
	hs, err := k.Symbol("hstates")
	if err != nil {
		return 0, 0, err
	}
	size, err1 := k.Types.Sizeof("hstate")
	nrOff, err2 := k.Types.Offset("hstate", "nr_huge_pages")
	freeOff, err3 := k.Types.Offset("hstate", "free_huge_pages")
	orderOff, err4 := k.Types.Offset("hstate", "order")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return 0, 0, err
	}
	// hstates is HUGE_MAX_HSTATE long: the symbol's size says how long
	// when the vmlinux is there; without it the count must at least fit
	// in what one hstate per huge page order could use.
	limit := uint64(64)
	if k.Vmlinux != nil {
		if _, symSize, err := k.Vmlinux.Symbol("hstates"); err == nil && symSize > 0 && size > 0 {
			limit = symSize / size
		}
	}
	if uint64(n) > limit {
		return 0, 0, fmt.Errorf("hugetlb_max_hstate %d exceeds hstates[%d]", n, limit)
	}
	for i := uint64(0); i < uint64(n); i++ {
		base := hs + i*size
		nr, err1 := k.ReadU64(base + nrOff)
		fr, err2 := k.ReadU64(base + freeOff)
		order, err3 := k.readU32(base + orderOff)
		if err := errors.Join(err1, err2, err3); err != nil {
			return 0, 0, fmt.Errorf("hstates[%d]: %w", i, err)
		}
		if order >= 64 {
			return 0, 0, fmt.Errorf("hstates[%d]: order %d", i, order)
		}
		total += nr << order
		free += fr << order
	}
	return total, free, nil
}

// blockdevPages sums the page cache of every block device inode (the
// "Buffers" of /proc/meminfo, nr_blockdev_pages()).
func (k *Kernel) blockdevPages() (uint64, error) {
	sbp, err := k.Symbol("blockdev_superblock")
	if err != nil {
		return 0, err
	}
	sb, err := k.ReadU64(sbp)
	if err != nil || sb == 0 {
		return 0, err
	}
	b := k.Types
	inodesOff, err1 := b.Offset("super_block", "s_inodes")
	listOff, err2 := b.Offset("inode", "i_sb_list")
	mapOff, err3 := b.Offset("inode", "i_mapping")
	nrOff, err4 := b.Offset("address_space", "nrpages")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return 0, err
	}
	head := sb + inodesOff
	var total uint64
	n := 0
	for p, err := k.listNext(head); p != head; p, err = k.listNext(p) {
		if err != nil {
			return total, err
		}
		if n++; n > MaxTasks {
			return total, errors.New("block device inode list does not end")
		}
		mapping, err := k.ReadU64(p - listOff + mapOff)
		if err != nil {
			return total, err
		}
		v, err := k.ReadU64(mapping + nrOff)
		if err != nil {
			return total, err
		}
		total += v
	}
	return total, nil
}

// TaskMem is a task's memory use in pages.
type TaskMem struct {
	VSZ, RSS uint64
}

// TaskMemory reads mm->total_vm and the RSS counters (an array of
// atomic_long in mm_rss_stat before 6.2, percpu_counters after).
func (k *Kernel) TaskMemory(t *Task) (TaskMem, error) {
	if t.MM == 0 {
		return TaskMem{}, nil
	}
	k.rssOnce.Do(k.loadRSSLayout)
	l := &k.rss
	if l.vmErr != nil {
		return TaskMem{}, l.vmErr
	}
	var m TaskMem
	var err error
	if m.VSZ, err = k.ReadU64(t.MM + l.totalVM); err != nil {
		return m, err
	}
	if l.err != nil {
		return m, l.err
	}
	for _, c := range l.counters {
		v, err := k.ReadU64(t.MM + c)
		if err != nil {
			return m, err
		}
		if int64(v) > 0 {
			m.RSS += v
		}
	}
	return m, nil
}

// rssLayout is where mm_struct keeps total_vm and the counters
// get_mm_rss() adds, found once (ps asks for every task).
type rssLayout struct {
	totalVM  uint64
	vmErr    error
	counters []uint64 // offsets in mm_struct
	err      error
}

func (k *Kernel) loadRSSLayout() {
	l := &k.rss
	b := k.Types
	l.totalVM, l.vmErr = b.Offset("mm_struct", "total_vm")
	l.counters, l.err = rssCounters(b)
}

// rssCounters returns the offsets in mm_struct of get_mm_rss()'s
// counters: file + anon + shmem pages, each counter's index from the
// kernel's own enum (MM_SWAPENTS sits among them).
func rssCounters(b symbols.Types) ([]uint64, error) {
	var idx []uint64
	for _, name := range []string{"MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"} {
		v, err := b.EnumValue(name)
		if err != nil {
			return nil, err
		}
		idx = append(idx, uint64(v))
	}
	var counters []uint64
	if off, err := b.Offset("mm_struct", "rss_stat.count"); err == nil {
		// An array of atomic_long_t in struct mm_rss_stat (before 6.2).
		size, err1 := b.Sizeof("mm_rss_stat")
		n, err2 := b.ArrayLen("mm_rss_stat", "count")
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if n == 0 || size%n != 0 {
			return nil, fmt.Errorf("struct mm_rss_stat of %d bytes does not hold %d counters", size, n)
		}
		for _, i := range idx {
			if i >= n {
				return nil, fmt.Errorf("rss counter %d past mm_rss_stat.count[%d]", i, n)
			}
			counters = append(counters, off+i*(size/n))
		}
	} else if off, err := b.Offset("mm_struct", "rss_stat"); err == nil {
		// An array of percpu_counter (6.2+); count is the folded total.
		n, err1 := b.ArrayLen("mm_struct", "rss_stat")
		size, err2 := b.Sizeof("percpu_counter")
		cnt, err3 := b.Offset("percpu_counter", "count")
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		for _, i := range idx {
			if i >= n {
				return nil, fmt.Errorf("rss counter %d past mm_struct.rss_stat[%d]", i, n)
			}
			counters = append(counters, off+i*size+cnt)
		}
	} else {
		return nil, err
	}
	return counters, nil
}

// Parent returns the pid of the task's real parent.
func (k *Kernel) Parent(t *Task) (int32, error) {
	off, err := k.Types.Offset("task_struct", "real_parent")
	if err != nil {
		return 0, err
	}
	p, err := k.ReadU64(t.Addr + off)
	if err != nil {
		return 0, err
	}
	if pt := k.byAddr[p]; pt != nil {
		return pt.PID, nil
	}
	pid, err := k.readU32(p + k.off.taskPID)
	return int32(pid), err
}

// PanicMessage finds the panic or oops line in the log.
func PanicMessage(recs []LogRecord) string {
	for i := len(recs) - 1; i >= 0; i-- {
		t := strings.TrimSpace(recs[i].Text)
		if strings.HasPrefix(t, "Kernel panic - not syncing") {
			return t
		}
	}
	for i := len(recs) - 1; i >= 0; i-- {
		t := strings.TrimSpace(recs[i].Text)
		for _, p := range []string{"BUG: ", "Oops: ", "general protection fault", "kernel BUG at", "sysrq: Trigger a crash"} {
			if strings.HasPrefix(t, p) {
				return t
			}
		}
	}
	return ""
}
